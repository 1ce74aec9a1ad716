"""The MDM web service adapter: what the gateway core asks of a protocol package."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.door import Door
from gateway.errors import GatewayError

from . import admin, cli, http, profiles
from .manage import add_credential, add_digital_id, create_configuration, describe
from .service import PROTOCOL

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.door import ProtocolConfigRecord

DEV_CONFIG = PROTOCOL
DEV_PLATFORM = "jamf"
DEV_DIGITAL_ID = "dev-device"
DEV_USERNAME = "mdm-dev"
DEV_SPEC = {"profile": "mdmws-p12-digsig-keyenc-client-auth",
            "rdn_format": "CN=<deviceName>,OU=<igusername>", "parent_dn": "O=Enrollment Gateway Dev",
            "description": "dev: PKCS#12 or SCEP challenge, client authentication"}


class MdmAdapter:
    name = PROTOCOL
    profiles: dict[str, str] = profiles.PROFILES

    def mount(self, app: web.Application, *, secure: bool) -> None:
        """HTTPS only: MDM platforms send a password with every call."""
        if secure:
            http.mount(app)

    async def bootstrap(self, door: Door, ca_id: str) -> dict[str, Any]:
        """The dev configuration ``mdm`` (Jamf), its SCEP configuration ``mdm-scep``, one
        digital ID and one credential, whose password goes to the dev-credentials file."""
        await create_configuration(door, DEV_CONFIG, ca_id, DEV_PLATFORM, actor="bootstrap")
        await add_digital_id(door, DEV_CONFIG, DEV_DIGITAL_ID, dict(DEV_SPEC), actor="bootstrap")
        issued = await add_credential(door, DEV_CONFIG, DEV_USERNAME, actor="bootstrap")
        return {DEV_CONFIG: {"username": DEV_USERNAME, "password": issued.secret}}

    def describe(self, config: Config, records: list[ProtocolConfigRecord],
                 dev_credentials: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for rec in records:
            scep = rec.settings.get("scep_config")
            # SCEP's route (protocols/scep): info runs without a door to ask it
            scep_url = f"{config.http_url}/scep/{scep}" if isinstance(scep, str) else None
            try:
                entry = describe(config.https_url, rec, scep_url)
            except GatewayError as exc:
                entry = {"config": rec.id, "error": exc.detail}
            dev = dev_credentials.get(rec.id) or {}
            entry["url"] = entry.get("web_service_url")
            entry["username"] = dev.get("username")
            entry["password"] = dev.get("password")
            out.append(entry)
        return out

    def add_cli(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
        cli.add_cli(subparsers, common)

    def mount_admin(self, admin_app: web.Application) -> None:
        admin.mount_admin(admin_app)


ADAPTER = MdmAdapter()
