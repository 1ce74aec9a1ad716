"""One :class:`IntuneClient` per Intune configuration, kept while its settings stay the same.

A client holds msal's token cache, the discovered service URIs and an HTTP session, so
it is built once per configuration, not per request: the cache is keyed by configuration
id and compared with the settings read on each request (an edit anywhere builds a new
client at once; the old one is closed). Closed when the app stops.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.door import Door

from .client import IntuneClient, IntuneConnection
from .settings import IntuneSettings, client_certificate, client_key, client_secret

log = logging.getLogger("gateway.scep.intune")

PROVIDER = "enrollment-gateway/0.1"
"""callerInfo and UserAgent of every Intune call."""


def connection_for(door: Door, config_id: str, settings: IntuneSettings) -> IntuneConnection:
    """What the client needs, the secret unsealed (ConfigError when it does not open)."""
    with_certificate = settings.client_certificate is not None
    return IntuneConnection(
        tenant=settings.tenant, client_id=settings.client_id,
        client_secret=None if with_certificate else client_secret(door, config_id, settings),
        client_certificate=client_certificate(config_id, settings) if with_certificate else None,
        client_key=client_key(door, config_id, settings) if with_certificate else None,
        authority_url=settings.authority_url,
        graph_url=settings.graph_url, ca_file=settings.ca_file, provider=PROVIDER, timeout=settings.timeout,
        retries=settings.retries,
    )


class IntuneClients:
    """The clients of one door's Intune configurations."""

    def __init__(self, door: Door) -> None:
        self._door = door
        self._clients: dict[str, tuple[IntuneSettings, IntuneClient]] = {}
        self._lock = asyncio.Lock()

    async def client(self, config_id: str, settings: IntuneSettings) -> IntuneClient:
        async with self._lock:
            cached = self._clients.get(config_id)
            if cached is not None and cached[0] == settings:
                return cached[1]
            client = IntuneClient(connection_for(self._door, config_id, settings))
            self._clients[config_id] = (settings, client)
        if cached is not None:
            log.info("intune: settings of %s changed; new client", config_id)
            await cached[1].close()
        return client

    async def close(self) -> None:
        async with self._lock:
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        for client in clients:
            await client.close()
