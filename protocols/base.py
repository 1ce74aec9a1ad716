"""What a protocol package gives the gateway: routes, dev bootstrap, info, CLI and admin hooks.

Each protocol is a room with one door into the core: it receives the running
:class:`gateway.runtime.Gateway` (through the app key ``gateway.web.keys.GATEWAY``)
and talks to ``gateway.authority`` only. A package ``protocols/<name>/`` exposes a
module-level ``ADAPTER`` implementing :class:`ProtocolAdapter`; it may ship its own
tables with Alembic migrations in ``protocols/<name>/migrations/`` (a branch off the
core's revision ``0001`` with ``branch_labels=("<name>",)``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.runtime import Gateway
    from gateway.store.records import ProtocolConfigRecord


class ProtocolAdapter(Protocol):
    name: str

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """Add this protocol's routes (or a sub-app) to the HTTPS (secure) or plain HTTP app."""

    async def bootstrap(self, gateway: "Gateway", ca_id: str) -> dict[str, Any]:
        """``gateway init``: create the dev protocol configuration(s) on ``ca_id``; return
        their plaintext dev credentials keyed by configuration id (stored 0600 for
        ``gateway info``; the store keeps only hashes)."""

    def describe(
        self, config: "Config", records: "list[ProtocolConfigRecord]", dev_credentials: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Entries for ``gateway info --json`` under ``protocols.<name>``: one per
        configuration record, with its URLs and the dev credentials ``bootstrap`` made."""

    def add_cli(self, subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
                common: argparse.ArgumentParser) -> None:
        """Add ``gateway <name> ...`` operator commands (may add nothing)."""

    def mount_admin(self, admin: web.Application) -> None:
        """Add admin API routes under ``/admin/<name>/...`` (may add nothing)."""


PROTOCOL_NAMES = ("acme", "scep", "est")
"""Protocols listed in ``gateway info --json`` (an empty list until a package fills it)."""
