"""The Windows enrollment adapter: CEP/CES routes, the dev configuration, info entries."""

from __future__ import annotations

import argparse
import re
import secrets
from typing import TYPE_CHECKING, Any, Mapping

from aiohttp import web
from cryptography.x509.oid import NameOID

from gateway.door import Door
from gateway.errors import ConfigError

from . import ces, http, mde2_http, paths
from .directory import policy as directory_policy
from .paths import AUTH_MODES, KEY_BASED_RENEWAL
from .settings import WindowsSettings, default_policy_id

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.door import ProtocolConfigRecord

PROTOCOL = http.PROTOCOL
DEV_CONFIG = "windows"
DEV_USERNAME = "windows"
COMPUTER_PROFILE = "windows-computer"
USER_PROFILE = "windows-user"

TEMPLATE_EXTENSIONS = '["1.3.6.1.4.1.311.21.7", "1.3.6.1.4.1.311.20.2", "1.3.6.1.4.1.311.25.2"]'
"""Both profiles let the CES add the template extension (v2 information, v1 name):
autoenrollment matches the certificates it holds to templates by it; and the SID extension
(szOID_NTDS_CA_SECURITY_EXT) of names built from Active Directory."""

PROFILES: Mapping[str, str] = {
    USER_PROFILE: '''
# Domain users (AD CS's "User" template): S/MIME and client authentication, e-mail and
# UPN names.
name = "windows-user"
description = "Windows user certificates (MS-XCEP/MS-WSTEP autoenrollment)"
validity = "P1Y"
max_validity = "P2Y"
backdate = "PT5M"
key_usage = ["digital_signature", "key_encipherment"]
key_usage_critical = true
extended_key_usage = ["email_protection", "client_auth"]

[key_policy]
allowed = ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521"]

[subject]
mode = "csr"

[san]
mode = "csr"
allowed_types = ["email", "upn"]

[extensions]
allowed = ''' + TEMPLATE_EXTENSIONS + '''
ignore_unknown_extensions = true
''',
    COMPUTER_PROFILE: '''
# Domain computers (AD CS's "Machine" template): client and server authentication,
# subject and DNS names as the computer asks, RSA as the legacy CSPs need.
name = "windows-computer"
description = "Windows computer certificates (MS-XCEP/MS-WSTEP autoenrollment)"
validity = "P1Y"
max_validity = "P2Y"
backdate = "PT5M"
key_usage = ["digital_signature", "key_encipherment"]
key_usage_critical = true
extended_key_usage = ["client_auth", "server_auth"]

[key_policy]
allowed = ["RSA-2048", "RSA-3072", "RSA-4096"]

[subject]
mode = "csr"

[san]
mode = "csr"
allowed_types = ["dns"]

[extensions]
allowed = ''' + TEMPLATE_EXTENSIONS + '''
ignore_unknown_extensions = true
''',
}


def forest_oid() -> str:
    """A template OID arc as AD CS makes one per forest: ``1.3.6.1.4.1.311.21.8`` and seven
    random numbers below 2^24 (one gateway, one arc; templates add two more)."""
    return "1.3.6.1.4.1.311.21.8." + ".".join(str(secrets.randbelow(1 << 24) + 1) for _ in range(7))


def iis_name(text: str) -> str:
    """A CA name as it can stand in an IIS application path."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.") or "CA"


def dev_settings(config_id: str, ca_name: str) -> dict[str, Any]:
    arc = f"{forest_oid()}.{secrets.randbelow(1 << 24) + 1}"
    return {
        "policy_id": default_policy_id(config_id),
        "friendly_name": "Gateway Dev Enrollment Policy",
        "next_update_hours": 8,
        "ca_name": ca_name,
        "adcs_paths": True,
        "mdm_discovery": True,
        "auth": ["username", "certificate"],
        "templates": [
            {"name": "GatewayUser", "display_name": "Gateway User", "profile": USER_PROFILE,
             "oid": f"{arc}.1", "schema": 2, "machine": False},
            {"name": "GatewayComputer", "display_name": "Gateway Computer", "profile": COMPUTER_PROFILE,
             "oid": f"{arc}.2", "schema": 2, "machine": True},
        ],
    }


def _urls(base: str, rec: "ProtocolConfigRecord", settings: WindowsSettings | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cep": {a: base + paths.cep_path(rec.id, a) for a in (*AUTH_MODES, KEY_BASED_RENEWAL)},
        "ces": {a: base + paths.ces_path(rec.id, a) for a in AUTH_MODES},
        "mdm": {"discovery": base + mde2_http.discovery_path(rec.id)},
    }
    if settings is not None and settings.mdm_discovery:
        out["mdm"]["enterprise_enrollment"] = base + mde2_http.DISCOVERY_PATH
    if settings is not None and settings.adcs_paths:
        out["adcs"] = {
            "cep": {a: base + paths.adcs_cep_path(a) for a in AUTH_MODES}
            | {KEY_BASED_RENEWAL: base + paths.adcs_cep_path(paths.CERTIFICATE, renewal_only=True)},
            "ces": {a: base + paths.adcs_ces_path(settings.ca_name, a) for a in AUTH_MODES},
        }
    return out


class WindowsAdapter:
    name = PROTOCOL
    profiles: Mapping[str, str] = PROFILES
    info_key = "xcep"
    """``gateway info --json`` lists these configurations under ``protocols.xcep``."""

    def mount(self, app: web.Application, *, secure: bool) -> None:
        # HTTPS only: UsernameToken passwords and client certificates need TLS (MS-XCEP 2.1).
        if not secure:
            return
        http.add_routes(app)  # CEP (MS-XCEP)
        ces.add_routes(app)  # CES (MS-WSTEP)
        mde2_http.add_routes(app)  # MDM discovery (MS-MDE2); its enrollment goes to the CES
        app.on_cleanup.append(_close_directories)

    async def bootstrap(self, door: Door, ca_id: str) -> dict[str, Any]:
        """The dev configuration ``windows`` (AD CS's paths too) with a user and a computer
        template, and its UsernameToken user, whose generated password is returned."""
        ca = door.ca_certificate(ca_id)
        names = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if ca is not None else []
        ca_name = iis_name(str(names[0].value)) if names else iis_name(ca_id)
        await door.create_configuration(
            DEV_CONFIG, ca_id, [USER_PROFILE, COMPUTER_PROFILE], default_profile=USER_PROFILE,
            settings=dev_settings(DEV_CONFIG, ca_name), actor="bootstrap",
        )
        issued = await door.credentials.create_user(DEV_CONFIG, DEV_USERNAME, actor="bootstrap")
        return {DEV_CONFIG: {"username": DEV_USERNAME, "password": issued.secret}}

    def describe(self, config: "Config", records: "list[ProtocolConfigRecord]",
                 dev_credentials: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for rec in records:
            creds = dev_credentials.get(rec.id) or {}
            try:
                settings: WindowsSettings | None = WindowsSettings.of(rec)
            except ConfigError:
                settings = None
            urls = _urls(config.https_url, rec, settings)
            out.append({
                "config": rec.id,
                # the policy URL an admin puts into Group Policy (the banner shows it)
                "url": (urls.get("adcs") or urls)["cep"]["username"],
                "policy_id": settings.policy_id if settings is not None else None,
                **urls,
                "username": creds.get("username"),
                "password": creds.get("password"),
            })
        return out

    def add_cli(self, subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
                common: argparse.ArgumentParser) -> None:
        """``gateway windows config|user|template ...``."""
        from . import cli

        cli.add_commands(subparsers, common)

    def mount_admin(self, admin: web.Application) -> None:
        """UsernameToken users under ``/admin/windows/<config>/users``; other settings are
        JSON on the core's protocol-config routes."""
        from . import admin as windows_admin

        windows_admin.mount_admin(admin)


ADAPTER = WindowsAdapter()


async def _close_directories(_app: web.Application) -> None:
    await directory_policy.close_all()
