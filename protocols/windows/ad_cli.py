"""``gateway windows ad ...``: a Windows configuration's Active Directory.

    gateway windows ad set --config corp --domain corp.example --server ldaps://dc1.corp.example \\
        --bind-user svc-gateway@corp.example --password-file /root/svc.pass --ca-file /etc/gateway/ad-ca.pem \\
        --profile CorpUser=windows-user --profile CorpComputer=windows-computer \\
        --keytab /etc/gateway/http.keytab --service HTTP@gateway.corp.example
    gateway windows ad check --config corp --principal alice      # what the gateway sees, for alice
    gateway windows ad clear --config corp

The service account's password is sealed under the CA passphrase before it is stored; it
is read from a file or stdin, never from the command line. Every change is audited.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any, Awaitable, Callable

from gateway.door import Door, DoorCommand, cli_actor, door_command
from gateway.errors import BadRequest

from .directory.check import check
from .directory.settings import SEAL_PURPOSE, seal_context
from .paths import KERBEROS
from .settings import parse_settings
from .users import windows_configuration


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    elif args.password_file_sealed is not None:
        with open(args.password_file_sealed, encoding="utf-8") as fh:
            value = fh.read().strip("\r\n")
    else:
        return None
    if not value:
        raise BadRequest("the service account password is empty")
    return value


def directory_table(args: argparse.Namespace, current: dict[str, Any], door: Door, config_id: str) -> dict[str, Any]:
    """The ``directory`` table after ``ad set``: given options replace, the rest stays."""
    table = dict(current)
    for key, value in (("domain", args.domain), ("base_dn", args.base_dn), ("bind_user", args.bind_user),
                       ("ca_file", args.ca_file), ("enrollment_service", args.enrollment_service),
                       ("default_profile", args.default_profile), ("timeout_seconds", args.timeout),
                       ("cache_seconds", args.cache_seconds), ("password_logon", args.password_logon)):
        if value is not None:
            table[key] = value
    if args.server:
        table["servers"] = list(args.server)
    if args.tls_name:
        table["tls_names"] = list(args.tls_name)
    if args.profile:
        profiles = dict(table.get("profiles", {}))
        for spec in args.profile:
            name, sep, profile = spec.partition("=")
            if not sep or not name or not profile:
                raise BadRequest(f"--profile {spec!r}: expected AD_TEMPLATE=PROFILE")
            profiles[name] = profile
        table["profiles"] = profiles
    secret = _password(args)
    if secret is not None:
        table["password"] = door.sealer(SEAL_PURPOSE).seal(secret.encode(), seal_context(config_id))
        table.pop("password_file", None)
    elif args.password_file is not None:
        table["password_file"] = args.password_file
        table.pop("password", None)
    return table


async def cmd_set(door: Door, args: argparse.Namespace) -> int:
    rec = await windows_configuration(door, args.config)
    settings = copy.deepcopy(rec.settings)
    settings["directory"] = directory_table(args, settings.get("directory", {}), door, rec.id)
    if args.keytab is not None:
        kerberos = dict(settings.get("kerberos", {}))
        kerberos["keytab"] = args.keytab
        if args.service is not None:
            kerberos["service"] = args.service
        kerberos.setdefault("realms", [settings["directory"].get("domain", "").upper()])
        settings["kerberos"] = kerberos
        auth = list(settings.get("auth", ["username", "certificate"]))
        settings["auth"] = auth if KERBEROS in auth else [*auth, KERBEROS]
    parse_settings(settings, rec.id, rec.ca_id, rec.profiles)  # refused before anything is stored
    await door.update_configuration(rec.id, settings=settings)
    fields = ["directory"] + (["kerberos", "auth"] if args.keytab is not None else [])
    await door.record_event("config_update", "success", protocol_config=rec.id, ca_id=rec.ca_id,
                            actor=cli_actor(), fields=fields)
    print(f"configuration {rec.id}: directory set ({', '.join(settings['directory']['servers'])}); "
          f"check it with 'gateway windows ad check --config {rec.id}'")
    return 0


async def cmd_clear(door: Door, args: argparse.Namespace) -> int:
    rec = await windows_configuration(door, args.config)
    settings = {k: v for k, v in rec.settings.items() if k != "directory"}
    parse_settings(settings, rec.id, rec.ca_id, rec.profiles)  # a directory-only configuration cannot lose it
    await door.update_configuration(rec.id, settings=settings)
    await door.record_event("config_update", "success", protocol_config=rec.id, ca_id=rec.ca_id,
                            actor=cli_actor(), fields=["directory"])
    print(f"configuration {rec.id}: directory removed")
    return 0


def _text(report: dict[str, Any]) -> list[str]:
    if not report.get("ok") and "templates" not in report:
        return [f"directory: NOT OK: {report.get('error')}"]
    lines = [f"directory {report['domain']} via {', '.join(report['servers'])} as {report['bind_user']}: ok",
             f"enrollment service {report['enrollment_service']!r}"]
    for t in report["templates"]:
        if t["offered"]:
            diff = f"  (differs: {'; '.join(t['differences'])})" if t["differences"] else ""
            lines.append(f"  template {t['name']} [{t['kind']}, subject from {t['subject']}] -> profile {t['profile']}{diff}")
        else:
            lines.append(f"  template {t['name']}: not offered: {t['reason']}")
    p = report.get("principal")
    if p is not None:
        if "refused" in p:
            lines.append(f"principal {p['name']}: refused: {p['refused']}")
        else:
            lines.append(f"principal {p['name']}: {p['kind']} {p['dn']} sid {p['sid']}, {p['groups']} groups")
            for t in p["templates"]:
                lines.append(f"  {t['name']}: enroll {'yes' if t['enroll'] else 'no'}, "
                             f"autoenroll {'yes' if t['autoenroll'] else 'no'}")
    return lines


async def cmd_check(door: Door, args: argparse.Namespace) -> int:
    rec = await windows_configuration(door, args.config)
    report = await check(door, rec, args.principal)
    print(json.dumps(report, indent=2) if args.json else "\n".join(_text(report)))
    return 0 if report.get("ok") else 1


Command = DoorCommand


def _with_door(fn: Command) -> Callable[[argparse.Namespace], Awaitable[int]]:
    return door_command("windows", fn)


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", parents: list[argparse.ArgumentParser],
                 as_json: argparse.ArgumentParser) -> None:
    ad = sub.add_parser("ad", help="the configuration's Active Directory (templates, rights, names, Kerberos)")
    verbs = ad.add_subparsers(dest="windows_ad_command", required=True)
    s = verbs.add_parser("set", parents=parents, help="set (or change) the directory; options not given stay")
    s.add_argument("--domain", help="DNS domain, e.g. corp.example (its upper case is the Kerberos realm)")
    s.add_argument("--server", action="append", metavar="URL",
                   help="ldaps://dc1.corp.example or ldap://... (StartTLS); repeat for more, tried in order")
    s.add_argument("--base-dn", help="default: DC=... from --domain")
    s.add_argument("--bind-user", help="service account: svc@corp.example, CORP\\svc or a DN")
    pw = s.add_mutually_exclusive_group()
    pw.add_argument("--password-stdin", action="store_true", help="read the service password from stdin (sealed)")
    pw.add_argument("--seal-password-from", dest="password_file_sealed", metavar="FILE",
                    help="read the service password from FILE once and store it sealed")
    pw.add_argument("--password-file", metavar="FILE",
                    help="read the service password from FILE (absolute path) whenever connecting; stores the path")
    s.add_argument("--ca-file", help="CA bundle the DC certificates verify against (absolute path)")
    s.add_argument("--tls-name", action="append", help="another name a DC certificate may carry")
    s.add_argument("--enrollment-service", help="cn of the pKIEnrollmentService (default: the ca_name)")
    s.add_argument("--profile", action="append", metavar="AD_TEMPLATE=PROFILE",
                   help="issue AD template AD_TEMPLATE under gateway profile PROFILE (one of the configuration's)")
    s.add_argument("--default-profile", help="profile for published templates not mapped by --profile")
    s.add_argument("--timeout", type=float, help="seconds per LDAP operation (default 5)")
    s.add_argument("--cache-seconds", type=float, help="how long answers are reused (default 300)")
    s.add_argument("--password-logon", action=argparse.BooleanOptionalAction, default=None,
                   help="check UsernameTokens by an LDAP bind as the user")
    s.add_argument("--keytab", help="keytab with HTTP/<host> for Negotiate (turns on the Kerberos endpoints)")
    s.add_argument("--service", help="acceptor service, e.g. HTTP@gateway.corp.example (default: any key in the keytab)")
    s.set_defaults(fn=_with_door(cmd_set))
    s = verbs.add_parser("clear", parents=parents, help="stop using the directory")
    s.set_defaults(fn=_with_door(cmd_clear))
    s = verbs.add_parser("check", parents=[*parents, as_json],
                         help="what the gateway sees: enrollment service, templates, a principal's rights")
    s.add_argument("--principal", help="an account (alice, WS1$, alice@CORP.EXAMPLE) to show the rights of")
    s.set_defaults(fn=_with_door(cmd_check))
