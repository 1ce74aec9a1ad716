"""The ACME protocol adapter: routes, dev bootstrap, ``gateway info`` entries, CLI and admin hooks.

Everything it hands the package is the ACME door (:class:`gateway.door.Door`):
the sub-app and the admin routes find it on the application they are mounted on,
the dev bootstrap receives it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Mapping

from aiohttp import web

from gateway.door import Door
from gateway.door import door as door_of

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.door import ProtocolConfigRecord

PROTOCOL = "acme"
DEV_CONFIG = "acme"
DEV_EAB_CONFIG = "acme-eab"
DEV_PROFILES = ["tls-server", "tls-client"]


class AcmeAdapter:
    name = PROTOCOL
    profiles: Mapping[str, str] = {}  # ACME issues no certificates of its own

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """ACME is served on the HTTPS listener only (RFC 8555 section 6.1)."""
        if not secure:
            return
        from .wfe import create_app

        app.add_subapp("/acme/", create_app(door_of(app, PROTOCOL)))

    async def bootstrap(self, door: Door, ca_id: str) -> dict[str, Any]:
        """Two dev directories: ``acme`` (EAB optional) and ``acme-eab`` (EAB required, one dev key)."""
        from . import eab
        from .keyring import Keyring
        from .store import AcmeStore

        await door.create_configuration(DEV_CONFIG, ca_id, DEV_PROFILES, settings={"eab_required": False})
        await door.create_configuration(DEV_EAB_CONFIG, ca_id, DEV_PROFILES, settings={"eab_required": True})
        created = await eab.create_key(
            AcmeStore(door.tables, door.clock), Keyring(door.sealing_passphrase()), DEV_EAB_CONFIG,
            label="dev key (gateway init)", created_by="init",
        )
        return {
            DEV_CONFIG: {"eab": None},
            DEV_EAB_CONFIG: {"eab": {"kid": created.record.kid, "hmac_key": created.hmac_key}},
        }

    def describe(self, config: "Config", records: "list[ProtocolConfigRecord]",
                 dev_credentials: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for rec in sorted(records, key=lambda r: r.id):
            dev = dev_credentials.get(rec.id) or {}
            out.append({
                "config": rec.id,
                "directory": f"{config.https_url}/acme/{rec.id}/directory",
                "eab": dev.get("eab"),
            })
        return out

    def add_cli(self, subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
                common: argparse.ArgumentParser) -> None:
        from .cli import add_cli

        add_cli(subparsers, common)

    def mount_admin(self, admin: web.Application) -> None:
        from . import admin as acme_admin

        acme_admin.mount(admin, door_of(admin, PROTOCOL))
