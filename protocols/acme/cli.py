"""``gateway acme ...``: operator commands for EAB keys and accounts.

``gateway acme eab create --config acme [--identifiers example.com,*.example.com] [--label L]``
prints the key id and the HMAC key once (the store keeps it sealed, see
:mod:`.keyring`); ``list`` and ``revoke`` manage existing keys. Each command opens
the ACME door on the data directory and reaches the core through it only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from gateway.errors import BadRequest, NotFound

if TYPE_CHECKING:  # the commands import what they run lazily: ``gateway --help`` stays quick
    from gateway.door import Door

    from .store import AcmeStore

PROTOCOL = "acme"


def _actor() -> str:
    from gateway.door import cli_actor

    return cli_actor()


async def _with_door(args: argparse.Namespace, fn: Callable[[Door], Awaitable[int]]) -> int:
    from gateway.config import load_config
    from gateway.door import open_door

    async with open_door(load_config(Path(args.data_dir)), PROTOCOL) as door:
        return await fn(door)


async def _require_acme_config(door: Door, config_id: str) -> None:
    if await door.find_configuration(config_id) is None:
        raise NotFound(f"no ACME configuration {config_id!r}")


def _store(door: Door) -> AcmeStore:
    from .store import AcmeStore

    return AcmeStore(door.tables, door.clock)


async def cmd_eab_create(args: argparse.Namespace) -> int:
    from . import eab
    from .keyring import Keyring

    identifiers = [x.strip() for x in (args.identifiers or "").split(",") if x.strip()] or None

    async def run(door: Door) -> int:
        await _require_acme_config(door, args.config)
        try:
            created = await eab.create_key(
                _store(door), Keyring(door.sealing_passphrase()), args.config,
                identifiers=identifiers, label=args.label or "", created_by=_actor(),
            )
        except ValueError as exc:
            raise BadRequest(f"--identifiers: {exc}") from None
        await door.record_event("acme_eab_create", "success", protocol_config=args.config,
                                kid=created.record.kid, actor=_actor())
        if args.json:
            print(json.dumps(created.view(), indent=2))
        else:
            print(f"kid:      {created.record.kid}")
            print(f"hmac_key: {created.hmac_key}")
            if identifiers:
                print(f"allowed:  {', '.join(identifiers)}")
            print("The HMAC key is shown only now; store it with the ACME client.", file=sys.stderr)
        return 0

    return await _with_door(args, run)


async def cmd_eab_list(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        await _require_acme_config(door, args.config)
        keys = await _store(door).list_eab(args.config, 1000, 0)
        if args.json:
            print(json.dumps([k.view() for k in keys], indent=2))
        else:
            for k in keys:
                state = "revoked" if k.revoked else (f"bound to {k.account_id}" if k.account_id else "unused")
                print(f"{k.kid}  {state}  {k.label}  {','.join(k.identifiers or [])}")
        return 0

    return await _with_door(args, run)


async def cmd_eab_revoke(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        await _require_acme_config(door, args.config)
        key = await _store(door).revoke_eab(args.config, args.kid)
        if key is None:
            raise NotFound(f"no EAB key {args.kid!r} in configuration {args.config!r}")
        await door.record_event("acme_eab_revoke", "success", protocol_config=args.config,
                                kid=args.kid, account=key.account_id, actor=_actor())
        print(f"revoked {args.kid}" + (f" (account {key.account_id} deactivated)" if key.account_id else ""))
        return 0

    return await _with_door(args, run)


def add_cli(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    acme = subparsers.add_parser("acme", help="ACME server: external account binding keys")
    sub = acme.add_subparsers(dest="acme_command", required=True)
    eab = sub.add_parser("eab", help="External Account Binding keys").add_subparsers(dest="eab_command", required=True)

    s = eab.add_parser("create", parents=[common], help="create an EAB key (the HMAC key is printed once)")
    s.add_argument("--config", default="acme", help="ACME configuration id (default: acme)")
    s.add_argument("--identifiers", help="comma-separated allowed names/IP networks (default: any)")
    s.add_argument("--label", help="free-text label")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(fn=cmd_eab_create)

    s = eab.add_parser("list", parents=[common], help="list EAB keys (never their HMAC keys)")
    s.add_argument("--config", default="acme", help="ACME configuration id (default: acme)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(fn=cmd_eab_list)

    s = eab.add_parser("revoke", parents=[common], help="revoke an EAB key (deactivates its account)")
    s.add_argument("kid", help="key id of the EAB key")
    s.add_argument("--config", default="acme", help="ACME configuration id (default: acme)")
    s.set_defaults(fn=cmd_eab_revoke)
