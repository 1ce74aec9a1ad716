"""The SCEP protocol adapter: what the gateway core asks of a protocol package."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.door import Door
from gateway.errors import GatewayError

from . import admin, cli, http
from .admins import set_challenge_admin
from .challenge import set_static_challenge
from .handoff import ScepChallengeIssuer
from .intune.revocation import schedule
from .intune.settings import parse_intune
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
        service = install(app)
        http.add_routes(app)
        if secure:  # once per process (the lease makes it once per cluster)
            schedule(app, service.door, service.intune)

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
            if isinstance(rec.settings.get("intune"), dict):
                entry["intune"] = intune_profile(config, rec)
            out.append(entry)
        return out

    def add_cli(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
        cli.add_cli(subparsers, common)

    def mount_admin(self, admin_app: web.Application) -> None:
        admin.mount_admin(admin_app)

    def challenge_issuer(self, door: Door) -> ScepChallengeIssuer:
        """One-time challenges other protocols hand out (``Door.challenge_issuer``)."""
        return ScepChallengeIssuer(door)


def intune_profile(config: Config, rec: ProtocolConfigRecord) -> dict[str, Any]:
    """What the Intune administrator enters: the SCEP server URL of the SCEP certificate
    profile, and the chain file the trusted certificate profile uploads (its last
    certificate is the root)."""
    out: dict[str, Any] = {"scep_server_url": f"{config.http_url}/scep/{rec.id}",
                           "trusted_certificate_chain": str((config.data_dir / "cas" / f"{rec.ca_id}-chain.pem")
                                                            .resolve())}
    try:
        intune = parse_intune(rec.settings.get("intune"), rec.id)
    except GatewayError as exc:
        return {**out, "error": exc.detail}
    if intune is not None:
        out.update(tenant=intune.tenant, client_id=intune.client_id,
                   revocation_sync_seconds=intune.revocation_sync_seconds)
    return out


ADAPTER = ScepAdapter()
