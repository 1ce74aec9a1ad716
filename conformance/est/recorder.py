"""Recording real EST clients' exchanges into ``fixtures/est/`` for the ordinary suite to replay.

A scenario is a sequence of exchanges one client made for one operation (Bouncy
Castle, for instance, first sends without credentials, gets the 401 challenge,
then sends again with them). Each exchange is saved with what a replay needs to
recreate the run: the label's settings, the Basic users and passwords, the
client certificate and key, trust anchors, and the CA chain that signed the
recorded responses. The keys and passwords are throwaway test material.

Saving happens only with ``GATEWAY_RECORD_FIXTURES=1``; otherwise the suites run
the clients and check them without touching the committed fixtures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from conformance.harness import FIXTURES, Exchange, save_exchange
from protocols.est.recording import TappedExchange, tapping

FIXTURE_DIR = FIXTURES / "est"
_DROP_REQUEST_HEADERS = {"host"}


def recording_enabled() -> bool:
    return os.environ.get("GATEWAY_RECORD_FIXTURES", "") in ("1", "true", "yes")


@dataclass
class Scenario:
    name: str
    meta: dict[str, Any]
    exchanges: list[TappedExchange] = field(default_factory=list)


class Recorder:
    """Collects the exchanges of named scenarios for one client."""

    def __init__(self, client: str, version: str, directory: Path = FIXTURE_DIR) -> None:
        self.client = client
        self.version = version
        self.directory = directory
        self.scenarios: list[Scenario] = []

    @contextlib.contextmanager
    def scenario(self, name: str, **meta: Any) -> Iterator[Scenario]:
        current = Scenario(name, meta)
        with tapping(current.exchanges.append):
            yield current
        self.scenarios.append(current)
        if recording_enabled():
            self.save(current)

    def save(self, scenario: Scenario) -> list[Path]:
        paths = []
        for old in self.directory.glob(f"{self.client}-{scenario.name}-*.json"):
            old.unlink()
        for step, ex in enumerate(scenario.exchanges):
            meta = {
                "client_version": self.version,
                "scenario": scenario.name,
                "step": step,
                "steps": len(scenario.exchanges),
                "tls_version": ex.tls_version,
                "tls_client_certificate": ex.client_certificate,
                "recorded": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
                **scenario.meta,
            }
            paths.append(save_exchange(self.directory, Exchange(
                name=f"{self.client}-{scenario.name}-{step:02d}",
                client=self.client,
                method=ex.method,
                path=ex.path,
                request_headers={k: v for k, v in ex.request_headers if k.lower() not in _DROP_REQUEST_HEADERS},
                request_body=ex.request_body,
                response_status=ex.status,
                response_headers=dict(ex.response_headers),
                response_body=ex.response_body,
                meta=meta,
            )))
        return paths
