"""``gateway mdm ...``: MDM web service configurations, digital IDs and credentials.

    gateway mdm create corp-jamf --platform jamf          # with its SCEP configuration corp-jamf-scep
    gateway mdm show corp-jamf                            # the values the MDM administrator enters
    gateway mdm digital-id add wifi --config corp-jamf --profile mdmws-p12-digital-signature-client-auth \\
        --rdn-format 'CN=<deviceName>,OU=<igusername>' --parent-dn 'O=Example,C=US'
    gateway mdm digital-id list|remove --config corp-jamf
    gateway mdm credential add jamf-prod --config corp-jamf   # prints a generated password once
    gateway mdm credential list|unlock|password|remove --config corp-jamf   # password: a new one, shown once
    gateway mdm variables                                 # what an RDN format may use

Every change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gateway.door import Door, cli_actor, default_issuing_ca, door_command

from . import profiles
from .manage import (
    add_credential, add_digital_id, create_configuration, describe_with, mdm_configuration, remove_credential,
    remove_digital_id, reset_password, unlock_credential,
)
from .platforms import PLATFORMS
from .rdn import VARIABLES
from .service import PROTOCOL
from .settings import PKCS12_ENCRYPTIONS

DEFAULT_CONFIG = PROTOCOL


def _emit(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items() if not isinstance(v, (list, dict))))


async def cmd_create(door: Door, args: argparse.Namespace) -> int:
    rec = await create_configuration(door, args.id, args.ca, args.platform, actor=cli_actor(),
                                     scep_config=args.scep_config, provision_scep=not args.no_scep)
    _emit(await describe_with(door, rec), args.json)
    return 0


async def cmd_list(door: Door, args: argparse.Namespace) -> int:
    _emit([await describe_with(door, rec) for rec in await door.configurations()], args.json)
    return 0


async def cmd_show(door: Door, args: argparse.Namespace) -> int:
    rec, _ = await mdm_configuration(door, args.id)
    info = await describe_with(door, rec)
    if args.json:
        _emit(info, True)
        return 0
    print(f"MDM configuration {info['config']} ({info['platform_name']}), CA {info['ca']}")
    print(f"  Web Service URL: {info['web_service_url']}")
    print(f"  WSDL:            {info['wsdl']}")
    print(f"  SCEP URL:        {info['scep_url'] or '(no SCEP challenges)'}")
    for did in info["digital_ids"]:
        print(f"  digital ID {did['name']}: profile {did['profile']}, subject {did['rdn_format']}"
              f"{',' + did['parent_dn'] if did['parent_dn'] else ''}")
    users = await door.credentials.list(rec.id, kind="user")
    print("  credentials: " + (", ".join(str(u.username) for u in users) or "(none: gateway mdm credential add)"))
    return 0


async def cmd_digital_id(door: Door, args: argparse.Namespace) -> int:
    if args.did_command == "add":
        spec: dict[str, Any] = {"profile": args.profile, "rdn_format": args.rdn_format,
                                "parent_dn": args.parent_dn or ""}
        for key in ("key_algorithm", "pkcs12_encryption", "description"):
            if getattr(args, key) is not None:
                spec[key] = getattr(args, key)
        await add_digital_id(door, args.config, args.name, spec, actor=cli_actor(), ca_id=args.ca)
    elif args.did_command == "remove":
        await remove_digital_id(door, args.config, args.name, actor=cli_actor())
        print(f"removed digital ID {args.name}")
        return 0
    rec, _ = await mdm_configuration(door, args.config)
    _emit((await describe_with(door, rec))["digital_ids"], args.json)
    return 0


async def cmd_credential(door: Door, args: argparse.Namespace) -> int:
    if args.cred_command == "add":
        password = Path(args.password_file).read_text().strip() if args.password_file else None
        issued = await add_credential(door, args.config, args.username, actor=cli_actor(), password=password)
        if password is None:
            print(f"user {args.username}  password {issued.secret}   (shown once: stored hashed)")
        else:
            print(f"user {args.username} created")
        return 0
    if args.cred_command == "remove":
        await remove_credential(door, args.config, args.username, actor=cli_actor())
        print(f"removed {args.username}")
        return 0
    if args.cred_command == "unlock":
        await unlock_credential(door, args.config, args.username, actor=cli_actor())
        print(f"unlocked {args.username}")
        return 0
    if args.cred_command == "password":
        password = await reset_password(door, args.config, args.username, actor=cli_actor())
        print(f"user {args.username}  password {password}   (shown once: stored hashed)")
        return 0
    rec, _ = await mdm_configuration(door, args.config)
    now = door.clock()
    rows = [{"username": u.username, "disabled": u.disabled, "locked": u.locked(now), "failures": u.failures,
             "last_used_at": u.last_used_at.isoformat() if u.last_used_at else None}
            for u in await door.credentials.list(rec.id, kind="user")]
    _emit(rows, args.json)
    return 0


async def cmd_variables(args: argparse.Namespace) -> int:
    for name, meaning in VARIABLES.items():
        print(f"<{name}>  {meaning}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    mdm = subparsers.add_parser("mdm", help="MDM web service (Jamf, Workspace ONE, Ivanti, MaaS360)")
    sub = mdm.add_subparsers(dest="mdm_command", required=True)
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=DEFAULT_CONFIG, help=f"MDM configuration id (default: {DEFAULT_CONFIG})")

    s = sub.add_parser("create", parents=[common, out], help="an MDM configuration (and its SCEP configuration)")
    s.add_argument("id", help="configuration id: 2-13 lower-case letters, digits, - and _")
    s.add_argument("--platform", required=True, choices=list(PLATFORMS), help="the MDM platform")
    s.add_argument("--ca", default=default_issuing_ca(), help="issuing CA id (default: the dev issuing CA)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--scep-config", help="hand out challenges of this existing SCEP configuration instead")
    g.add_argument("--no-scep", action="store_true", help="no SCEP challenges (PKCS#12 only)")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_create))

    s = sub.add_parser("list", parents=[common, out], help="MDM configurations with their URLs")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_list))
    s = sub.add_parser("show", parents=[common, out], help="what the MDM administrator enters")
    s.add_argument("id", nargs="?", default=DEFAULT_CONFIG, help=f"configuration id (default: {DEFAULT_CONFIG})")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_show))

    did = sub.add_parser("digital-id", help="digital IDs: profile, RDN format, parent DN")
    did_sub = did.add_subparsers(dest="did_command", required=True)
    s = did_sub.add_parser("add", parents=[common, config, out], help="add a digital ID")
    s.add_argument("name", help="digital ID name (lower case, digits, . _ -)")
    s.add_argument("--profile", required=True, choices=list(profiles.NAMES), help="an mdmws profile")
    s.add_argument("--rdn-format", required=True, help="e.g. 'CN=<deviceName>,OU=<igusername>' (gateway mdm variables)")
    s.add_argument("--parent-dn", help="RFC 4514 DN appended to the RDN format's result, e.g. 'O=Example,C=US'")
    s.add_argument("--ca", help="must be the configuration's CA (a digital ID issues from it)")
    s.add_argument("--key-algorithm", help="key generated for PKCS#12 enrollments (default RSA-2048)")
    s.add_argument("--pkcs12-encryption", choices=list(PKCS12_ENCRYPTIONS), help="default legacy (3DES)")
    s.add_argument("--description", help="free text shown with the digital ID")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_digital_id))
    s = did_sub.add_parser("list", parents=[common, config, out], help="digital IDs with their URLs")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_digital_id))
    s = did_sub.add_parser("remove", parents=[common, config], help="remove a digital ID")
    s.add_argument("name", help="digital ID name")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_digital_id), json=False)

    cred = sub.add_parser("credential", help="user names and passwords the MDM authenticates with")
    cred_sub = cred.add_subparsers(dest="cred_command", required=True)
    s = cred_sub.add_parser("add", parents=[common, config], help="create; prints a generated password once")
    s.add_argument("username", help="2-18 characters: lower case, digits, - and _")
    s.add_argument("--password-file", help="file holding the password (default: generate one)")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_credential))
    s = cred_sub.add_parser("list", parents=[common, config, out], help="credentials (never passwords)")
    s.set_defaults(fn=door_command(PROTOCOL, cmd_credential))
    for verb, text in (("unlock", "end a lockout"), ("password", "a new generated password, printed once"),
                       ("remove", "delete a credential")):
        s = cred_sub.add_parser(verb, parents=[common, config], help=text)
        s.add_argument("username", help="the credential's user name")
        s.set_defaults(fn=door_command(PROTOCOL, cmd_credential))

    s = sub.add_parser("variables", parents=[common], help="the variables an RDN format may use")
    s.set_defaults(fn=cmd_variables)
