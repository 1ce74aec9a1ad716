"""What a protocol package gives the gateway: routes, dev bootstrap, info, CLI and admin hooks.

Each protocol is a room with one door into the core: a :class:`gateway.door.Door`
scoped to the protocol (``gateway.door.door(app_or_request, name)`` in handlers,
``gateway.door.open_door`` in CLIs, the argument of :meth:`ProtocolAdapter.bootstrap`).
Nothing else of the core is reachable (the import contracts in ``.ci/run``). A package
``protocols/<name>/`` is listed in :data:`protocols.KNOWN` and exposes a module-level
``ADAPTER`` implementing :class:`ProtocolAdapter`; it may ship its own tables with
Alembic migrations in ``protocols/<name>/migrations/`` (a branch off the core's
revision ``0001`` with ``branch_labels=("<name>",)``), and profiles it needs for
certificates of its own (``profiles``: name to TOML text).

Optional capabilities, looked up with ``getattr`` by the core: ``challenge_issuer(door)
-> gateway.door.ChallengeIssuer`` (one-time challenges this protocol redeems and other
protocols hand out: SCEP's, for the MDM web service; see ``Door.challenge_issuer``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.door import Door, ProtocolConfigRecord


class ProtocolAdapter(Protocol):
    name: str
    profiles: Mapping[str, str]
    """Profiles the protocol issues its own certificates under (e.g. SCEP's RA), as TOML."""

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """Add this protocol's routes (or a sub-app) to the HTTPS (secure) or plain HTTP app."""

    async def bootstrap(self, door: "Door", ca_id: str) -> dict[str, Any]:
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


