"""``gateway acme ...``: operator commands for EAB keys and accounts.

``gateway acme eab create --config acme [--identifiers example.com,*.example.com] [--label L]``
prints the key id and the HMAC key once (the store keeps it sealed, see
:mod:`.keyring`); ``list`` and ``revoke`` manage existing keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from gateway.errors import BadRequest, ConfigError, NotFound


async def _with_gateway(args: argparse.Namespace, fn: Callable[[Any], Awaitable[int]]) -> int:
    from gateway import bootstrap
    from gateway.config import load_config
    from gateway.runtime import Gateway

    if not bootstrap.is_initialized(Path(args.data_dir)):
        raise ConfigError(f"{args.data_dir} is not initialized; run 'gateway init' first")
    gw = await Gateway.open(load_config(Path(args.data_dir)))
    try:
        return await fn(gw)
    finally:
        await gw.close()


async def _require_acme_config(gw: Any, config_id: str) -> None:
    rec = await gw.store.get_protocol_config(config_id)
    if rec is None or rec.protocol != "acme":
        raise NotFound(f"no ACME configuration {config_id!r}")


async def cmd_eab_create(args: argparse.Namespace) -> int:
    from . import eab
    from .keyring import Keyring
    from .store import AcmeStore

    identifiers = [x.strip() for x in (args.identifiers or "").split(",") if x.strip()] or None

    async def run(gw: Any) -> int:
        await _require_acme_config(gw, args.config)
        try:
            created = await eab.create_key(
                AcmeStore(gw.store), Keyring(gw.config.ca_passphrase()), args.config,
                identifiers=identifiers, label=args.label or "", created_by="cli",
            )
        except ValueError as exc:
            raise BadRequest(f"--identifiers: {exc}") from None
        await gw.authority.events.record("acme_eab_create", "success", protocol_config=args.config,
                                         kid=created.record.kid, actor="cli")
        if args.json:
            print(json.dumps(created.view(), indent=2))
        else:
            print(f"kid:      {created.record.kid}")
            print(f"hmac_key: {created.hmac_key}")
            if identifiers:
                print(f"allowed:  {', '.join(identifiers)}")
            print("The HMAC key is shown only now; store it with the ACME client.", file=sys.stderr)
        return 0

    return await _with_gateway(args, run)


async def cmd_eab_list(args: argparse.Namespace) -> int:
    from .store import AcmeStore

    async def run(gw: Any) -> int:
        await _require_acme_config(gw, args.config)
        keys = await AcmeStore(gw.store).list_eab(args.config, 1000, 0)
        if args.json:
            print(json.dumps([k.view() for k in keys], indent=2))
        else:
            for k in keys:
                state = "revoked" if k.revoked else (f"bound to {k.account_id}" if k.account_id else "unused")
                print(f"{k.kid}  {state}  {k.label}  {','.join(k.identifiers or [])}")
        return 0

    return await _with_gateway(args, run)


async def cmd_eab_revoke(args: argparse.Namespace) -> int:
    from .store import AcmeStore

    async def run(gw: Any) -> int:
        await _require_acme_config(gw, args.config)
        key = await AcmeStore(gw.store).revoke_eab(args.config, args.kid)
        if key is None:
            raise NotFound(f"no EAB key {args.kid!r} in configuration {args.config!r}")
        await gw.authority.events.record("acme_eab_revoke", "success", protocol_config=args.config,
                                         kid=args.kid, account=key.account_id, actor="cli")
        print(f"revoked {args.kid}" + (f" (account {key.account_id} deactivated)" if key.account_id else ""))
        return 0

    return await _with_gateway(args, run)


def add_cli(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    acme = subparsers.add_parser("acme", help="ACME server: external account binding keys")
    sub = acme.add_subparsers(dest="acme_command", required=True)
    eab = sub.add_parser("eab", help="External Account Binding keys").add_subparsers(dest="eab_command", required=True)

    s = eab.add_parser("create", parents=[common], help="create an EAB key (the HMAC key is printed once)")
    s.add_argument("--config", default="acme", help="ACME configuration id (default: acme)")
    s.add_argument("--identifiers", help="comma-separated allowed names/IP networks (default: any)")
    s.add_argument("--label", help="free-text label")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_eab_create)

    s = eab.add_parser("list", parents=[common], help="list EAB keys (never their HMAC keys)")
    s.add_argument("--config", default="acme")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_eab_list)

    s = eab.add_parser("revoke", parents=[common], help="revoke an EAB key (deactivates its account)")
    s.add_argument("kid")
    s.add_argument("--config", default="acme")
    s.set_defaults(fn=cmd_eab_revoke)
