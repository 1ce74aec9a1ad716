"""What the ACME front end holds while it runs: store, keys, a short config cache, background work.

One :class:`AcmeRuntime` per HTTPS application. It reads protocol configurations
through the core Authority (which refuses disabled or foreign ones) and keeps
each for a moment (``CONFIG_TTL``), so a burst of requests costs one lookup;
parsed settings are cached per distinct settings object, so a change made on
another replica is picked up within the TTL. Challenge validations run as
background tasks owned here and are cancelled at shutdown; a janitor deletes used
nonces and rate counters that can no longer matter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Coroutine

from cryptography import x509

from gateway.errors import ConfigError, GatewayError
from gateway.runtime import Gateway
from gateway.store.records import ProtocolConfigRecord

from .. import problems
from ..keyring import Keyring
from ..nonces import MemoryNonces, NonceMinter
from ..records import now_utc
from ..settings import AcmeSettings
from ..store import AcmeStore

log = logging.getLogger("gateway.acme")

PROTOCOL = "acme"


@dataclass(frozen=True)
class AcmeConfig:
    """A protocol configuration with its parsed ACME settings."""

    record: ProtocolConfigRecord
    settings: AcmeSettings

    @property
    def id(self) -> str:
        return self.record.id


class AcmeRuntime:
    CONFIG_TTL = 1.0  # seconds a configuration is served from memory
    SWEEP_INTERVAL = 300.0

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.authority = gateway.authority
        self.store = AcmeStore(gateway.store)
        self.keyring = Keyring.for_passphrase(gateway.config.ca_passphrase())
        # without replicas, nonces are this process's own and their use is tracked in memory
        self.nonces: NonceMinter = (NonceMinter(self.keyring.nonce_key) if gateway.config.store_has_replicas
                                    else MemoryNonces())
        self._configs: dict[str, tuple[float, AcmeConfig]] = {}
        self._parsed: dict[tuple[str, str], AcmeSettings] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chains: dict[str, tuple[str, tuple[x509.Certificate, ...]]] = {}

    # --- configurations ------------------------------------------------------------
    async def config(self, config_id: str) -> AcmeConfig:
        now = time.monotonic()
        cached = self._configs.get(config_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            record = await self.authority.config(config_id, PROTOCOL)
        except GatewayError as exc:
            self._configs.pop(config_id, None)
            if exc.kind.value == "not_found":
                raise problems.not_found(f"no ACME directory {config_id!r}") from None
            raise problems.unauthorized(exc.detail) from None
        acme = AcmeConfig(record, self.settings_for(record))
        self._configs[config_id] = (now + self.CONFIG_TTL, acme)
        return acme

    def settings_for(self, record: ProtocolConfigRecord) -> AcmeSettings:
        key = (record.id, json.dumps(record.settings, sort_keys=True))
        parsed = self._parsed.get(key)
        if parsed is None:
            try:
                parsed = AcmeSettings.parse(record.id, record.settings)
            except ConfigError as exc:
                log.error("%s", exc.detail)
                raise problems.server_internal(f"ACME configuration {record.id} is misconfigured") from None
            self._parsed[key] = parsed
        return parsed

    def cached(self, config_id: str) -> AcmeConfig | None:
        """The configuration if this request already loaded it (no I/O)."""
        entry = self._configs.get(config_id)
        return entry[1] if entry is not None else None

    def forget(self, config_id: str) -> None:
        self._configs.pop(config_id, None)

    async def chain(self, ca_id: str) -> tuple[x509.Certificate, ...]:
        """The issuing CA's chain (CA first, root last), cached per CA certificate."""
        ca = await self.gateway.cas.local(ca_id)
        pem = ca.record.certificate_pem or ""
        cached = self._chains.get(ca_id)
        if cached is None or cached[0] != pem:
            cached = (pem, await ca.chain())
            self._chains[ca_id] = cached
        return cached[1]

    # --- background work ----------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait for running validations (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def janitor(self) -> None:
        while True:
            try:
                await self.store.sweep(now_utc())
            except GatewayError as exc:
                log.warning("ACME sweep failed: %s", exc.detail)
            await asyncio.sleep(self.SWEEP_INTERVAL)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
