"""An Intune SCEP configuration on a served gateway, pointed at the Intune simulator.

The gateway runs in this process on real sockets (``conformance.scep.support.served``);
the configuration ``intune`` (issuing-rsa, its own RA) gets its Intune connection from
the real CLI (``gateway scep intune set``, the secret on stdin), so the sealed secret and
the settings are what an operator would store. The simulator is the fixture of
``tests/intune`` (D's), over HTTPS on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.harness import require_client, run_cli
from conformance.intune.simulator import IntuneSimulator
from conformance.scep.support import Served, run, served
from protocols.scep.ra import issue_ra
from protocols.scep.repository import ScepRepository
from tests.intune.conftest import simulator  # noqa: F401 - the fixture, shared

CONFIG = "intune"
CA = "issuing-rsa"


@dataclass
class IntuneEnv:
    served: Served
    sim: IntuneSimulator

    @property
    def door(self):  # type: ignore[no-untyped-def]
        return self.served.gw.door("scep")

    async def cli(self, *args: str, stdin: str | None = None) -> str:
        """The real ``gateway`` CLI in a thread (the served gateway keeps its loop)."""
        out = await asyncio.to_thread(run_cli, *args, data_dir=self.served.info.data_dir,
                                      input=stdin.encode() if stdin is not None else None)
        return out.stdout

    async def set_intune(self, *extra: str) -> str:
        return await self.cli(
            "scep", "intune", "set", "--config", CONFIG, "--tenant", self.sim.tenant, "--client-id", self.sim.client_id,
            "--client-secret-stdin", "--authority-url", self.sim.base_url, "--graph-url", self.sim.base_url,
            "--ca-file", str(self.sim.ca_file), "--retries", "2", "--timeout", "5", *extra,
            stdin=self.sim.client_secret + "\n")

    async def scepclient(self, workdir: Path, *args: str, config: str = CONFIG) -> tuple[int, str]:
        binary = require_client("scepclient", "Debian package scep")
        workdir.mkdir(parents=True, exist_ok=True)
        result = await run(binary, "-server-url", self.served.url(config), "-private-key", str(workdir / "key.pem"),
                           "-ca-fingerprint", await self.served.ra_fingerprint(config), *args, cwd=workdir)
        return result.returncode, result.stdout + result.stderr


@pytest.fixture
async def env(tmp_path: Path, simulator: IntuneSimulator) -> AsyncIterator[IntuneEnv]:  # noqa: F811
    async with served(tmp_path) as s:
        door = s.gw.door("scep")
        await door.create_configuration(CONFIG, CA, ["device", "tls-client"])
        await issue_ra(door, ScepRepository(door.tables), CONFIG, CA)
        e = IntuneEnv(s, simulator)
        await e.set_intune("--revocation-sync-seconds", "0")  # passes run when a test says so
        yield e
