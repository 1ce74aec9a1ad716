"""``gateway windows ...``: Windows enrollment (CEP/CES) configurations, users, templates.

    gateway windows config create corp --template CorpUser --computer-template CorpComputer --adcs-paths
    gateway windows config list
    gateway windows config show corp            # the URLs for Group Policy, certutil, Get-Certificate
    gateway windows user add alice --config corp --template CorpUser   # prints a generated password once
    gateway windows user list|disable|enable|unlock|remove alice --config corp
    gateway windows template list --config corp
    gateway windows ad set|check|clear --config corp ...   # Active Directory (ad_cli.py)

Users are the configuration's UsernameToken credentials (``door.credentials``: scrypt
hashes, the shared lockout); templates are its ``templates`` setting. Every change is
audited as ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from cryptography.x509.oid import NameOID

from gateway.config import load_config
from gateway.door import CredentialInfo, Door, ProtocolConfigRecord, cli_actor, default_issuing_ca, open_door
from gateway.errors import BadRequest, ConfigError

from . import ad_cli, paths
from .adapter import COMPUTER_PROFILE, DEV_CONFIG, USER_PROFILE, _urls, forest_oid, iis_name
from .paths import AUTH_MODES, KERBEROS, USERNAME
from .settings import OID_RE, WindowsSettings, default_policy_id, parse_settings
from .users import add_user, find_user, remove_user, templates_of, windows_configuration

PROTOCOL = "windows"

MODE_NAMES = {USERNAME: "Username/password", paths.CERTIFICATE: "X.509 Certificate", KERBEROS: "Windows integrated"}
"""What Group Policy's *Certificate Enrollment Policy* dialog calls each authentication type."""


async def _with_door(args: argparse.Namespace, fn: Callable[[Door], Awaitable[int]]) -> int:
    async with open_door(load_config(Path(args.data_dir)), PROTOCOL) as door:
        return await fn(door)


def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items()))


# --- configurations ----------------------------------------------------------------------------


def _template_specs(args: argparse.Namespace, arc: str) -> list[dict[str, Any]]:
    """``--template NAME[:PROFILE]`` / ``--computer-template NAME[:PROFILE]`` as template settings."""
    specs = [(s, False, USER_PROFILE) for s in args.template or []]
    specs += [(s, True, COMPUTER_PROFILE) for s in args.computer_template or []]
    if not specs:
        specs = [("GatewayUser", False, USER_PROFILE), ("GatewayComputer", True, COMPUTER_PROFILE)]
    out = []
    for number, (spec, machine, default_profile) in enumerate(specs, start=1):
        name, _, profile = spec.partition(":")
        template: dict[str, Any] = {"name": name, "profile": profile or default_profile,
                                    "oid": f"{arc}.{number}", "schema": 2, "machine": machine}
        if args.restricted:
            template["enroll"] = []
        out.append(template)
    return out


async def _take_adcs_paths(door: Door, keep: str) -> None:
    """One configuration answers on AD CS's paths: the one losing them is audited too."""
    for other in await door.configurations():
        if other.id != keep and other.settings.get("adcs_paths"):
            await door.update_configuration(other.id, settings={**other.settings, "adcs_paths": False})
            await door.record_event("config_update", "success", protocol_config=other.id, ca_id=other.ca_id,
                                    actor=cli_actor(), fields=["adcs_paths"])


async def cmd_config_create(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        if args.oid_arc is not None and not OID_RE.match(args.oid_arc):
            raise BadRequest(f"--oid-arc {args.oid_arc!r} is not a dotted OID")
        arc = args.oid_arc or f"{forest_oid()}.1"
        templates = _template_specs(args, arc)
        if args.ca is None:  # the dev configuration's (RSA: the legacy CSPs), else the dev issuing CA
            dev = await door.find_configuration(DEV_CONFIG)
            args.ca = dev.ca_id if dev is not None else default_issuing_ca()
        ca = door.ca_certificate(args.ca)
        names = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if ca is not None else []
        settings: dict[str, Any] = {
            "policy_id": default_policy_id(args.name),
            "friendly_name": args.friendly_name or f"{args.name} enrollment policy",
            "ca_name": iis_name(str(names[0].value)) if names else iis_name(args.ca),
            "adcs_paths": args.adcs_paths,
            "auth": args.auth or [USERNAME, paths.CERTIFICATE],
            "templates": templates,
        }
        profiles = list(dict.fromkeys(t["profile"] for t in templates))
        parse_settings(settings, args.name, args.ca, profiles)  # refused before anything is stored
        rec = await door.create_configuration(args.name, args.ca, profiles, default_profile=profiles[0],
                                              settings=settings, actor=cli_actor())
        if args.adcs_paths:  # after: a refused create moves nothing
            await _take_adcs_paths(door, rec.id)
        print(f"created Windows configuration {rec.id}: policy "
              f"{door.config.https_url}{paths.cep_path(rec.id, USERNAME)}  ('gateway windows config show {rec.id}')")
        return 0
    return await _with_door(args, run)


def _settings(rec: ProtocolConfigRecord) -> WindowsSettings | None:
    try:
        return WindowsSettings.of(rec)
    except ConfigError:
        return None


async def cmd_config_list(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rows = []
        for rec in await door.configurations():
            settings = _settings(rec)
            urls = _urls(door.config.https_url, rec, settings)
            rows.append({
                "config": rec.id, "enabled": rec.enabled, "ca": rec.ca_id,
                "adcs_paths": settings.adcs_paths if settings else None,
                "templates": [t.name for t in settings.templates] if settings else None,
                "users": len(await door.credentials.list(rec.id, kind="user")),
                "policy_url": (urls.get("adcs") or urls)["cep"][USERNAME],
            })
        _print(rows, args.json)
        return 0
    return await _with_door(args, run)


def _show_lines(rec: ProtocolConfigRecord, settings: WindowsSettings, urls: dict[str, Any], user: str) -> list[str]:
    families = [("gateway paths", urls)] + ([("AD CS paths", urls["adcs"])] if "adcs" in urls else [])
    out = [f"configuration {rec.id} ({'enabled' if rec.enabled else 'disabled'}) on CA {rec.ca_id}",
           f"policy {settings.policy_id} {settings.friendly_name!r}, next update {settings.next_update_hours}h",
           "templates " + ", ".join(t.name for t in settings.templates)]
    for title, family in families:
        out.append(f"{title}:")
        for mode in settings.auth:
            kind = MODE_NAMES[mode] + (" (not served yet)" if mode == KERBEROS else "")
            out.append(f"  CEP {mode:<16}{family['cep'][mode]}  [{kind}]")
        if paths.CERTIFICATE in settings.auth:
            out.append(f"  CEP {'keybasedrenewal':<16}{family['cep'][paths.KEY_BASED_RENEWAL]}  [X.509 Certificate]")
        for mode in settings.auth:
            out.append(f"  CES {mode:<16}{family['ces'][mode]}")
    cep = (urls.get("adcs") or urls)["cep"][USERNAME]
    template = settings.templates[0].name if settings.templates else "<template>"
    out += [
        "Group Policy: Public Key Policies > Certificate Services Client - Certificate Enrollment Policy:",
        f"  add {cep} with authentication type Username/password (or the certificate URL with X.509 Certificate)",
        "certutil / PowerShell:",
        f'  certutil -f -PolicyServer "{cep}" -UserName {user} -p "<password>" -Policy',
        f"  Add-CertificateEnrollmentPolicyServer -Url {cep} -Context User -Credential (Get-Credential {user}) "
        "-AutoEnrollmentEnabled",
        f"  Get-Certificate -Template {template} -Url {cep} -Credential (Get-Credential {user}) "
        r"-CertStoreLocation Cert:\CurrentUser\My",
    ]
    return out


async def cmd_config_show(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await windows_configuration(door, args.name)
        settings = WindowsSettings.of(rec)  # a broken configuration says what is wrong
        urls = _urls(door.config.https_url, rec, settings)
        users = await door.credentials.list(rec.id, kind="user")
        if args.json:
            print(json.dumps({"config": rec.id, "enabled": rec.enabled, "ca": rec.ca_id,
                              "policy_id": settings.policy_id, "friendly_name": settings.friendly_name,
                              "auth": list(settings.auth), "templates": [t.name for t in settings.templates],
                              "users": [u.username for u in users], **urls}, indent=2))
        else:
            user = users[0].username if users else "<user>"
            print("\n".join(_show_lines(rec, settings, urls, str(user))))
        return 0
    return await _with_door(args, run)


# --- users ---------------------------------------------------------------------------------------


def _stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _user_row(user: CredentialInfo, rec: ProtocolConfigRecord, door: Door) -> dict[str, Any]:
    return {
        "username": user.username, "disabled": user.disabled, "locked": user.locked(door.clock()),
        "locked_until": _stamp(user.locked_until), "failures": user.failures,
        "templates": templates_of(rec, str(user.username)),
        "created_at": _stamp(user.created_at), "last_used_at": _stamp(user.last_used_at),
    }


async def cmd_user_add(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await windows_configuration(door, args.config)
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        issued = await add_user(door, rec, args.username, password, args.template or [], actor=cli_actor())
        if not args.password_stdin:
            print(issued.secret)  # shown once; only its hash is stored
        return 0
    return await _with_door(args, run)


async def cmd_user_remove(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await windows_configuration(door, args.config)
        await remove_user(door, rec, args.username, actor=cli_actor())
        return 0
    return await _with_door(args, run)


async def cmd_user_change(args: argparse.Namespace) -> int:
    """``disable`` / ``enable`` / ``unlock`` one user."""
    async def run(door: Door) -> int:
        rec = await windows_configuration(door, args.config)
        user = await find_user(door, rec, args.username)
        verb = {"disable": door.credentials.disable, "enable": door.credentials.enable,
                "unlock": door.credentials.unlock}[args.windows_user_command]
        await verb(rec.id, user.id, actor=cli_actor())
        return 0
    return await _with_door(args, run)


async def cmd_user_list(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await windows_configuration(door, args.config)
        _print([_user_row(u, rec, door) for u in await door.credentials.list(rec.id, kind="user")], args.json)
        return 0
    return await _with_door(args, run)


# --- templates -----------------------------------------------------------------------------------


async def cmd_template_list(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await windows_configuration(door, args.config)
        settings = WindowsSettings.of(rec)
        rows = [{"name": t.name, "oid": t.oid, "profile": t.profile, "schema": t.schema,
                 "kind": "computer" if t.machine else "user", "enroll": list(t.enroll),
                 "autoenroll_for": list(t.autoenroll_for) if t.autoenroll else []}
                for t in settings.templates]
        _print(rows, args.json)
        return 0
    return await _with_door(args, run)


# --- the parser ----------------------------------------------------------------------------------


def add_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
                 common: argparse.ArgumentParser) -> None:
    windows = subparsers.add_parser("windows", help="Windows enrollment (CEP/CES): configurations, users, templates")
    sub = windows.add_subparsers(dest="windows_command", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=DEV_CONFIG, help=f"Windows configuration id (default: {DEV_CONFIG})")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    cfg = sub.add_parser("config", help="Windows configurations (one enrollment policy each)").add_subparsers(
        dest="windows_config_command", required=True)
    s = cfg.add_parser("create", parents=[common], help="a new configuration with its templates")
    s.add_argument("name", help="configuration id (2-18 of a-z 0-9 _ -; the path segment after /windows/)")
    s.add_argument("--ca", help=f"issuing CA id (default: the one of configuration {DEV_CONFIG!r}, the dev RSA CA)")
    s.add_argument("--template", action="append", metavar="NAME[:PROFILE]",
                   help=f"a user template (repeatable; profile default {USER_PROFILE})")
    s.add_argument("--computer-template", action="append", metavar="NAME[:PROFILE]",
                   help=f"a computer template (repeatable; profile default {COMPUTER_PROFILE}); "
                        "with no template options: GatewayUser and GatewayComputer")
    s.add_argument("--oid-arc", help="template OID arc, e.g. your AD forest's 1.3.6.1.4.1.311.21.8.x...; "
                                     "templates get ARC.1, ARC.2, ... (default: a new random arc)")
    s.add_argument("--restricted", action="store_true",
                   help="no user may enroll until 'user add --template' names it (default: every user)")
    s.add_argument("--auth", action="append", choices=AUTH_MODES,
                   help="CES authentication modes advertised (repeatable; default username and certificate)")
    s.add_argument("--adcs-paths", action="store_true",
                   help="also serve it on AD CS's paths (taken from the configuration that had them)")
    s.add_argument("--friendly-name", help="policyFriendlyName Windows shows (default: '<name> enrollment policy')")
    s.set_defaults(fn=cmd_config_create)
    s = cfg.add_parser("list", parents=[common, as_json], help="configurations, their templates and policy URL")
    s.set_defaults(fn=cmd_config_list)
    s = cfg.add_parser("show", parents=[common, as_json],
                       help="CEP/CES URLs per authentication mode and the Group Policy / certutil lines")
    s.add_argument("name", help="configuration id")
    s.set_defaults(fn=cmd_config_show)

    user = sub.add_parser("user", help="UsernameToken users of a configuration").add_subparsers(
        dest="windows_user_command", required=True)
    s = user.add_parser("add", parents=[common, config], help="add a user; prints a generated password once")
    s.add_argument("username", help="user name (2-64 letters, digits, ._@\\-; e.g. alice, alice@corp.example)")
    s.add_argument("--template", action="append", metavar="NAME",
                   help="a template the user may enroll in (repeatable; needed where 'enroll' does not list *)")
    s.add_argument("--password-stdin", action="store_true",
                   help="read the password (8-1024 characters) from stdin instead of generating one")
    s.set_defaults(fn=cmd_user_add)
    s = user.add_parser("remove", parents=[common, config], help="delete a user and its template grants")
    s.add_argument("username", help="user name")
    s.set_defaults(fn=cmd_user_remove)
    for verb, text in (("disable", "refuse a user from now on (kept; 'enable' lets it in again)"),
                       ("enable", "let a disabled user in again"),
                       ("unlock", "end a lockout after repeated wrong passwords now")):
        s = user.add_parser(verb, parents=[common, config], help=text)
        s.add_argument("username", help="user name")
        s.set_defaults(fn=cmd_user_change)
    s = user.add_parser("list", parents=[common, config, as_json],
                        help="users: disabled, locked out, templates, last used")
    s.set_defaults(fn=cmd_user_list)

    template = sub.add_parser("template", help="the templates a configuration offers").add_subparsers(
        dest="windows_template_command", required=True)
    s = template.add_parser("list", parents=[common, config, as_json],
                            help="name, OID, profile and who may enroll")
    s.set_defaults(fn=cmd_template_list)

    ad_cli.add_commands(sub, [common, config], as_json)
