"""The EST adapter: routes on the HTTPS listener, the dev label, info entries, CLI."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Mapping

from aiohttp import web

from gateway.door import Door
from gateway.door import door as door_of

from . import cli
from .policy import DEFAULT_LABEL
from .routes import PREFIX, PROTOCOL, create_app

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.door import ProtocolConfigRecord

DEV_USERNAME = "est"
DEV_PROFILES = ["device", "tls-client", "tls-server"]
DEV_CSRATTRS: dict[str, Any] = {
    # The plain list (RFC 7030 A.2 style) for older clients ...
    "oids": ["ecdsa-with-SHA256"],
    "attributes": [{"type": "id-ecPublicKey", "values": [{"oid": "secp256r1"}]}],
    # ... and the RFC 9908 template that newer clients use instead.
    "template": {
        "subject": [{"type": "commonName"}],
        "key": "EC-P256",
        "extensions": [{"oid": "subjectAltName"}],
    },
}


def label_url(config: "Config", label: str) -> str:
    return f"{config.https_url}{PREFIX}/{label}"


class EstAdapter:
    name = PROTOCOL
    profiles: Mapping[str, str] = {}  # EST issues no certificates of its own

    def mount(self, app: web.Application, *, secure: bool) -> None:
        # EST is TLS-only (RFC 7030 section 3.3): nothing on the plain HTTP listener.
        if secure:
            app.add_subapp(PREFIX, create_app(door_of(app, PROTOCOL)))

    async def bootstrap(self, door: Door, ca_id: str) -> dict[str, Any]:
        """The dev label ``est`` and its Basic user, whose generated password is returned
        (for ``gateway info``) and otherwise stored only hashed, as an enrollment credential."""
        await door.create_configuration(
            DEFAULT_LABEL, ca_id, list(DEV_PROFILES), default_profile=DEV_PROFILES[0],
            settings={"auth": "either", "pop_linking": "optional", "csrattrs": DEV_CSRATTRS, "default": True},
        )
        issued = await door.credentials.create_user(DEFAULT_LABEL, DEV_USERNAME, actor="bootstrap")
        return {DEFAULT_LABEL: {"username": DEV_USERNAME, "password": issued.secret}}

    def describe(self, config: "Config", records: "list[ProtocolConfigRecord]",
                 dev_credentials: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for rec in records:
            creds = dev_credentials.get(rec.id) or {}
            out.append({
                "config": rec.id,
                "url": label_url(config, rec.id),
                "username": creds.get("username"),
                "password": creds.get("password"),
            })
        return out

    def add_cli(self, subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
                common: argparse.ArgumentParser) -> None:
        cli.add_commands(subparsers, common)

    def mount_admin(self, admin: web.Application) -> None:
        """EST users (``/admin/est/<label>/users``); EST settings are plain JSON on the
        core's protocol-config routes (``PATCH /admin/protocol-configs/<label>``)."""
        from . import admin as est_admin

        est_admin.mount_admin(admin)


ADAPTER = EstAdapter()
