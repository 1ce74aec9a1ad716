"""The SCEP protocol adapter: what the gateway core asks of a protocol package."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.door import Door

from . import admin, cli, http
from .admins import set_challenge_admin
from .challenge import set_static_challenge
from .ra import RA_PROFILE, RA_PROFILE_TOML, issue_ra
from .repository import ScepRepository
from .service import PROTOCOL, install

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.door import ProtocolConfigRecord

DEV_CONFIG = PROTOCOL
DEV_PROFILES = ["device", "tls-client"]
DEV_ADMIN = "ndes-admin"
"""User name of the dev challenge admin (mscep_admin page and Jamf webhook)."""


class ScepAdapter:
    name = PROTOCOL
    profiles: dict[str, str] = {RA_PROFILE: RA_PROFILE_TOML}
    """The RA certificates' profile: the core loads it at start (a data directory's
    ``profiles/scep-ra.toml`` overrides it)."""

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """Same routes on both listeners: devices use plain HTTP (the envelope protects the
        request), MDMs and admins HTTPS; mscep_admin and the webhook refuse plain HTTP
        unless a configuration allows it. Each app gets its own service (caches)."""
        install(app)
        http.add_routes(app)

    async def bootstrap(self, door: Door, ca_id: str) -> dict[str, Any]:
        """The dev configuration ``scep``: RA from ``ca_id``, a static challenge, served
        on the NDES paths, and a challenge admin for mscep_admin and the webhook (an
        enrollment credential of the door)."""
        repo = ScepRepository(door.tables)
        await door.create_configuration(DEV_CONFIG, ca_id, DEV_PROFILES, settings={"ndes": True})
        await issue_ra(door, repo, DEV_CONFIG, ca_id)
        challenge = await set_static_challenge(repo, DEV_CONFIG)
        admin = await set_challenge_admin(door.credentials, DEV_CONFIG, DEV_ADMIN, actor="bootstrap")
        # the user name is fixed (DEV_ADMIN): only secrets go to the dev-credentials file
        return {DEV_CONFIG: {"challenge": challenge, "admin_password": admin.secret}}

    def describe(
        self, config: Config, records: list[ProtocolConfigRecord], dev_credentials: dict[str, Any]
    ) -> list[dict[str, Any]]:
        out = []
        for rec in records:
            dev = dev_credentials.get(rec.id) or {}
            entry: dict[str, Any] = {"config": rec.id, "url": f"{config.http_url}/scep/{rec.id}",
                                     "challenge": dev.get("challenge")}
            if dev.get("admin_password"):  # the dev challenge admin (mscep_admin, webhook)
                entry["admin"] = {"username": DEV_ADMIN, "password": dev["admin_password"]}
            out.append(entry)
        return out

    def add_cli(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
        cli.add_cli(subparsers, common)

    def mount_admin(self, admin_app: web.Application) -> None:
        admin.mount_admin(admin_app)


ADAPTER = ScepAdapter()
