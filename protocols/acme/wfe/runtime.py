"""What the ACME front end holds while it runs: its door, store, keys, configurations, background work.

One :class:`AcmeRuntime` per ACME application, kept under an app key and started
and stopped with the application (``cleanup_ctx``): nothing lives in module globals.
It reads protocol configurations through the door (which refuses disabled or
foreign ones) and keeps them for as long as the store's configuration generation
is unchanged: every request reads the generation once, so an edit made by any
worker or replica is seen on the next request, and a burst of requests costs one
configuration lookup. Challenge validations run as background tasks owned here
and are cancelled at shutdown; a janitor deletes used nonces and rate counters
that can no longer matter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Coroutine, cast

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.door import Door, ProtocolConfigRecord
from gateway.errors import ConfigError, ErrorKind, GatewayError

from .. import problems
from ..keyring import Keyring
from ..nonces import MemoryNonces, NonceMinter
from ..records import Account
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
    SWEEP_INTERVAL = 300.0
    MAX_KEYS = 10_000  # parsed account keys kept (a bound on memory, not a time limit)

    def __init__(self, door: Door) -> None:
        self.door = door
        self.store = AcmeStore(door.tables, door.clock)
        self.keyring = Keyring(door.sealing_passphrase())
        # without replicas, nonces are this process's own and their use is tracked in memory
        self.nonces: NonceMinter = (NonceMinter(self.keyring.nonce_key) if door.tables.replicated
                                    else MemoryNonces())
        self._generation: int | None = None
        self._configs: dict[str, AcmeConfig] = {}
        self._keys: dict[str, josepy.JWK] = {}
        self._chain_pems: dict[str, tuple[tuple[x509.Certificate, ...], bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._janitor: asyncio.Task[None] | None = None

    def now(self) -> dt.datetime:
        """The gateway's injected clock (aware UTC): every expiry decision reads it."""
        return self.door.clock()

    # --- nonces ----------------------------------------------------------------------
    def mint_nonce(self) -> str:
        return self.nonces.mint(self.now().timestamp())

    def check_nonce(self, nonce: str, lifetime: dt.timedelta) -> dt.datetime | None:
        """When an authentic, unexpired nonce expires (None otherwise); see :mod:`..nonces`."""
        return self.nonces.check(nonce, lifetime, self.now().timestamp())

    # --- configurations ------------------------------------------------------------
    async def config(self, config_id: str) -> AcmeConfig:
        """The enabled ACME configuration, as of the store's current generation.

        Generations only grow: a newer one empties the cache; an older one (a read
        that overlapped a newer request's) is served fresh from the store, uncached.
        A configuration is kept only if no newer generation arrived while it was read.
        """
        generation = await self.door.configuration_generation()
        if self._generation is None or generation > self._generation:
            self._configs = {}
            self._generation = generation
        elif generation == self._generation:
            cached = self._configs.get(config_id)
            if cached is not None:
                return cached
        try:
            record = await self.door.configuration(config_id)
        except GatewayError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                raise problems.not_found(f"no ACME directory {config_id!r}") from None
            raise problems.unauthorized(exc.detail) from None
        acme = AcmeConfig(record, self._parse(record))
        if self._generation == generation:
            self._configs[config_id] = acme
        return acme

    @staticmethod
    def _parse(record: ProtocolConfigRecord) -> AcmeSettings:
        try:
            return AcmeSettings.parse(record.id, record.settings)
        except ConfigError as exc:
            log.error("%s", exc.detail)
            raise problems.server_internal(f"ACME configuration {record.id} is misconfigured") from None

    def cached(self, config_id: str) -> AcmeConfig | None:
        """The configuration if this request already loaded it (no I/O)."""
        return self._configs.get(config_id)

    # --- account keys and CA chains ----------------------------------------------------
    def account_key(self, account: Account) -> josepy.JWK:
        """Parsed account keys, memoised by thumbprint (stored keys were checked at registration)."""
        key = self._keys.get(account.thumbprint)
        if key is None:
            key = cast(josepy.JWK, josepy.JWK.from_json(account.jwk))
            if len(self._keys) >= self.MAX_KEYS:
                self._keys.clear()
            self._keys[account.thumbprint] = key
        return key

    async def chain(self, ca_id: str) -> tuple[x509.Certificate, ...]:
        """The issuing CA's chain (CA first, root last)."""
        return await self.door.chain(ca_id)

    def chain_pem(self, ca_id: str, chain: tuple[x509.Certificate, ...]) -> bytes:
        """PEM of a CA chain (or a prefix of it), encoded once per chain: chains change
        only at rollover, certificate downloads are many."""
        key = f"{ca_id}/{len(chain)}"
        cached = self._chain_pems.get(key)
        if cached is None or cached[0] != chain:
            cached = (chain, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
            self._chain_pems[key] = cached
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

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.store.sweep(self.now())
            except GatewayError as exc:
                log.warning("ACME sweep failed: %s", exc.detail)
            await asyncio.sleep(self.SWEEP_INTERVAL)

    def start(self) -> None:
        """Start the janitor (the application's startup)."""
        if self._janitor is None:
            self._janitor = asyncio.get_running_loop().create_task(self._sweep_forever(), name="acme-janitor")

    async def close(self) -> None:
        """Stop the janitor and running validations (the application's cleanup)."""
        tasks = list(self._tasks)
        if self._janitor is not None:
            tasks.append(self._janitor)
            self._janitor = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
