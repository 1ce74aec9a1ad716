"""What a protocol package gives the gateway: routes to mount and a line for ``info``.

Each protocol is a room with one door into the core: it gets the running
:class:`gateway.runtime.Gateway` and talks only to ``gateway.authority``.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class ProtocolAdapter(Protocol):
    name: str

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """Add this protocol's routes (or a sub-app) to the HTTPS (secure) or plain HTTP app."""

    def describe(
        self, config: Any, records: list[Any], dev_credentials: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Entries for ``gateway info --json`` under ``protocols.<name>``, one per
        protocol configuration record of this protocol (URLs and dev credentials)."""


ADAPTERS: list[ProtocolAdapter] = []
"""Protocol adapters mounted by the app factory; each protocol package appends itself."""

PROTOCOL_NAMES = ("acme", "scep", "est")
"""Protocols listed in ``gateway info --json`` (an empty list until a package fills it)."""
