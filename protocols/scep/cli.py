"""``gateway scep ...``: operator commands for SCEP configurations.

    gateway scep challenge [--config scep] [--subject DN] [--ttl PT30M]   one-time challenge
    gateway scep static-challenge [--config scep] [--value V]             set/rotate the static one
    gateway scep admin add|remove USER [--config scep] [--password P]     mscep_admin/webhook users
    gateway scep ra list|issue|import [--config scep] [--force] ...       RA certificates
    gateway scep config create ID --ca CA [--profile P]... [--approval manual] [--ndes]
    gateway scep intune set|show|sync --config ID ...                    Microsoft Intune (intune/cli.py)

Secrets are printed once on stdout and stored only hashed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.config import load_config, parse_duration, update_dev_credentials
from gateway.door import Door, cli_actor, default_issuing_ca, open_door
from gateway.errors import ConfigError

from .admins import remove_challenge_admin, set_challenge_admin
from .challenge import issue_dynamic_challenge, set_static_challenge
from .intune import cli as intune_cli
from .ra import import_ra, issue_ra
from .repository import ScepRepository
from .service import PROTOCOL
from .settings import ScepSettings

ACTOR = cli_actor()
"""Audit actor of every command here: ``cli:<os user>``, as for the core's commands."""


async def _with_door(args: argparse.Namespace, fn: Callable[[Door, ScepRepository], Awaitable[int]]) -> int:
    """Run ``fn`` on the SCEP door of the data directory's gateway (refused when the
    directory was never initialized)."""
    async with open_door(load_config(Path(args.data_dir)), PROTOCOL) as door:
        return await fn(door, ScepRepository(door.tables))


async def cmd_challenge(args: argparse.Namespace) -> int:
    async def run(door: Door, repo: ScepRepository) -> int:
        rec = await door.configuration(args.config)
        settings = ScepSettings.of(rec)
        ttl = settings.challenge_lifetime(parse_duration(args.ttl, "--ttl") if args.ttl else None)
        issued = await issue_dynamic_challenge(
            repo, rec.id, ttl=ttl, limit=settings.dynamic_challenge_limit, source="cli",
            issued_by=ACTOR, bound_subject=args.subject, now=door.clock(),
        )
        await door.record_event("scep_challenge", "success", protocol_config=rec.id, source="cli",
                                actor=ACTOR, bound=args.subject is not None)
        if args.json:
            print(json.dumps({"challenge": issued.challenge, "expires_at": issued.expires_at.isoformat(),
                              "subject": issued.bound_subject}))
        else:
            print(issued.challenge)
        return 0
    return await _with_door(args, run)


async def cmd_static_challenge(args: argparse.Namespace) -> int:
    async def run(door: Door, repo: ScepRepository) -> int:
        rec = await door.configuration(args.config)
        value = await set_static_challenge(repo, rec.id, args.value)
        update_dev_credentials(load_config(Path(args.data_dir)), PROTOCOL, rec.id, {"challenge": value})
        print(value)
        await door.record_event("scep_static_challenge", "success", protocol_config=rec.id, actor=ACTOR)
        return 0
    return await _with_door(args, run)


async def cmd_admin(args: argparse.Namespace) -> int:
    async def run(door: Door, repo: ScepRepository) -> int:
        rec = await door.configuration(args.config)
        if args.admin_command == "add":
            issued = await set_challenge_admin(door.credentials, rec.id, args.username, args.password, actor=ACTOR)
            print(issued.secret)
        elif not await remove_challenge_admin(door.credentials, rec.id, args.username, actor=ACTOR):
            raise ConfigError(f"no challenge admin {args.username!r} in {rec.id!r}")
        await door.record_event(f"scep_challenge_admin_{args.admin_command}", "success",
                                protocol_config=rec.id, actor=ACTOR, username=args.username)
        return 0
    return await _with_door(args, run)


async def cmd_ra(args: argparse.Namespace) -> int:
    async def run(door: Door, repo: ScepRepository) -> int:
        rec = await door.configuration(args.config)
        if args.ra_command == "issue":
            ca_id = ScepSettings.of(rec).ra_ca or rec.ca_id
            if args.role == "next":
                ca_id = ScepSettings.of(rec).next_ca or ""
                if not ca_id:
                    raise ConfigError("set settings.next_ca before issuing a next RA")
            await issue_ra(door, repo, rec.id, ca_id, role=args.role, actor=ACTOR)
        elif args.ra_command == "import":
            password = Path(args.key_password_file).read_bytes().strip() if args.key_password_file else None
            imported = await import_ra(
                door, repo, rec.id, Path(args.certificate).read_bytes(), Path(args.key).read_bytes(),
                key_password=password, chain_pem=Path(args.chain).read_bytes() if args.chain else b"",
                actor=ACTOR, force=args.force,
            )
            for warning in imported.warnings:
                print(f"gateway: WARNING: imported anyway (--force): {warning}", file=sys.stderr)
        rows: list[dict[str, Any]] = []
        from .admin import ra_view

        for ra in await repo.ra_certificates(rec.id):
            view = ra_view(ra)
            view.pop("certificate_pem")
            rows.append(view)
        print(json.dumps(rows, indent=2))
        return 0
    return await _with_door(args, run)


async def cmd_config_create(args: argparse.Namespace) -> int:
    async def run(door: Door, repo: ScepRepository) -> int:
        settings: dict[str, Any] = {}
        if args.approval:
            settings["approval"] = args.approval
        if args.ndes:
            settings["ndes"] = True
        if args.no_challenge:
            settings["challenge"] = "none"
        if args.ra_ca:
            settings["ra_ca"] = args.ra_ca
        rec = await door.create_configuration(
            args.id, args.ca, args.profile or ["device"], settings=settings, actor=ACTOR,
        )
        await issue_ra(door, repo, rec.id, args.ra_ca or rec.ca_id, actor=ACTOR)
        out: dict[str, Any] = {"config": rec.id}
        if args.static_challenge is not None:
            out["challenge"] = await set_static_challenge(repo, rec.id, args.static_challenge or None)
            await door.record_event("scep_static_challenge", "success", protocol_config=rec.id, actor=ACTOR)
        print(json.dumps(out))
        return 0
    return await _with_door(args, run)


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    scep = subparsers.add_parser("scep", help="SCEP challenges, RA certificates and configurations")
    sub = scep.add_subparsers(dest="scep_command", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=PROTOCOL, help="SCEP configuration id (default: scep)")

    s = sub.add_parser("challenge", parents=[common, config], help="issue a one-time challenge password")
    s.add_argument("--subject", help=(
        "bind to this whole subject (RFC 4514, e.g. CN=device-42,O=Acme): the CSR needs the same "
        "RDNs in the same order; values compare ignoring case and extra spaces"))
    s.add_argument("--ttl", help=("lifetime as ISO 8601 duration (default: settings.dynamic_challenge_ttl; "
                                  "at most settings.max_challenge_lifetime, default P7D)"))
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(fn=cmd_challenge)

    s = sub.add_parser("static-challenge", parents=[common, config], help="set or rotate the static challenge")
    s.add_argument("--value", help="the new challenge (default: generate one)")
    s.set_defaults(fn=cmd_static_challenge)

    admin = sub.add_parser("admin", help="credentials for mscep_admin and the Jamf webhook")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    s = admin_sub.add_parser("add", parents=[common, config], help="create or reset (ends a lockout); prints the password")
    s.add_argument("username", help="admin user name")
    s.add_argument("--password", help="default: generate one")
    s.set_defaults(fn=cmd_admin)
    s = admin_sub.add_parser("remove", parents=[common, config], help="remove an admin user")
    s.add_argument("username", help="admin user name")
    s.set_defaults(fn=cmd_admin)

    ra = sub.add_parser("ra", help="RA certificates")
    ra_sub = ra.add_subparsers(dest="ra_command", required=True)
    s = ra_sub.add_parser("list", parents=[common, config], help="list the RA certificates")
    s.set_defaults(fn=cmd_ra)
    s = ra_sub.add_parser("issue", parents=[common, config], help="renew (current) or prepare a rollover (next)")
    s.add_argument("--role", choices=["current", "next"], default="current", help="current RA, or next for a rollover (default current)")
    s.set_defaults(fn=cmd_ra)
    s = ra_sub.add_parser("import", parents=[common, config], help="use an existing RSA certificate and key")
    s.add_argument("certificate", help="PEM file of the RA certificate")
    s.add_argument("key", help="PEM file of the RA private key")
    s.add_argument("--chain", help="issuer chain PEM")
    s.add_argument("--key-password-file", help="file holding the key's password, if encrypted")
    s.add_argument("--force", action="store_true",
                   help="import an expired or not yet valid certificate, or an RSA key below 2048 bits, with a warning")
    s.set_defaults(fn=cmd_ra)

    cfg = sub.add_parser("config", help="SCEP configurations")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    s = cfg_sub.add_parser("create", parents=[common], help="a configuration with its RA certificate")
    s.add_argument("id", help="SCEP configuration id")
    s.add_argument("--ca", default=default_issuing_ca(), help="issuing CA id (default: the dev issuing CA)")
    s.add_argument("--profile", action="append", help="certificate profile (repeatable; first is default)")
    s.add_argument("--approval", choices=["auto", "manual"], help="hold requests for an operator (manual) or issue at once (auto)")
    s.add_argument("--ndes", action="store_true", help="serve it on the NDES paths")
    s.add_argument("--static-challenge", nargs="?", const="", help="set a static challenge (generated if no value)")
    s.add_argument("--no-challenge", action="store_true", help="enroll without challenge (use with --approval manual)")
    s.add_argument("--ra-ca", help="CA that issues the RA certificate (default --ca; give a local CA when --ca is "
                   "an ACME upstream, which cannot issue one)")
    s.set_defaults(fn=cmd_config_create)

    intune_cli.add_cli(sub, common, config)
