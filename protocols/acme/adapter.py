"""The ACME protocol adapter: routes, dev bootstrap, ``gateway info`` entries, CLI and admin hooks."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.runtime import Gateway
    from gateway.store.records import ProtocolConfigRecord

DEV_CONFIG = "acme"
DEV_EAB_CONFIG = "acme-eab"
DEV_PROFILES = ["tls-server", "tls-client"]


class AcmeAdapter:
    name = "acme"

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """ACME is served on the HTTPS listener only (RFC 8555 section 6.1)."""
        if not secure:
            return
        from gateway.web.keys import GATEWAY

        from .wfe import create_app

        app.add_subapp("/acme/", create_app(app[GATEWAY]))

    async def bootstrap(self, gateway: "Gateway", ca_id: str) -> dict[str, Any]:
        """Two dev directories: ``acme`` (EAB optional) and ``acme-eab`` (EAB required, one dev key)."""
        from . import eab
        from .keyring import Keyring
        from .store import AcmeStore

        authority = gateway.authority
        await authority.create_config(DEV_CONFIG, "acme", ca_id, DEV_PROFILES, settings={"eab_required": False})
        await authority.create_config(DEV_EAB_CONFIG, "acme", ca_id, DEV_PROFILES, settings={"eab_required": True})
        created = await eab.create_key(
            AcmeStore(gateway.store), Keyring(gateway.config.ca_passphrase()), DEV_EAB_CONFIG,
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
        from gateway.web.keys import GATEWAY

        from . import admin as acme_admin
        from .keyring import Keyring

        acme_admin.mount(admin, Keyring.for_passphrase(admin[GATEWAY].config.ca_passphrase()))
