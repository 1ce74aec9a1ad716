"""``gateway distribution`` (where a configuration's certificates are pushed) and
``gateway outbox`` (what was delivered, what is pending, what failed). Secrets given here
(a destination's password or client key) are sealed in the store and never printed."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .runtime import Gateway


async def cmd_add(args: argparse.Namespace) -> int:
    from .admin.outbox import destination_view
    from .cli import _cli_actor, _print_rows, _with_gateway, read_secret
    from .distribution import destination_settings
    from .store.records import DestinationRecord

    async def run(gw: "Gateway") -> int:
        await gw.authority.config(args.config)  # the configuration must exist
        password = read_secret(args.password_env, args.password_stdin)
        dest_id = uuid.uuid4().hex[:16]
        settings = destination_settings(
            dest_id, gw.cas.sealer("distribution"), url=args.url, username=args.user, password=password,
            client_certificate_pem=Path(args.client_cert).read_text() if args.client_cert else None,
            client_key_pem=Path(args.client_key).read_bytes() if args.client_key else None,
            trust_pem=Path(args.trust).read_text() if args.trust else None,
            include_chain=args.chain, include_revocations=args.revocations,
        )
        rec = DestinationRecord(id=dest_id, protocol_config=args.config, url=args.url, settings=settings)
        async with gw.store.transaction() as q:
            await q.destinations.insert(rec)
        await gw.authority.events.record("destination_create", "success", protocol_config=args.config,
                                         actor=_cli_actor(), destination=dest_id, url=args.url)
        _print_rows([destination_view(rec)], args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_list(args: argparse.Namespace) -> int:
    from .admin.outbox import destination_view
    from .cli import _print_rows, _with_gateway

    async def run(gw: "Gateway") -> int:
        async with gw.store.read() as q:
            rows = [destination_view(r) for r in await q.destinations.list(args.config)]
        _print_rows(rows, args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_remove(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway

    async def run(gw: "Gateway") -> int:
        async with gw.store.transaction() as q:
            if not await q.destinations.delete(args.id):
                raise ConfigError(f"no destination {args.id}")
        await gw.authority.events.record("destination_delete", "success", actor=_cli_actor(), destination=args.id)
        print(f"removed destination {args.id}; its pending deliveries fail", file=sys.stderr)
        return 0
    return await _with_gateway(args, run)


async def cmd_outbox_list(args: argparse.Namespace) -> int:
    from .admin.outbox import outbox_view
    from .cli import _print_rows, _with_gateway

    async def run(gw: "Gateway") -> int:
        async with gw.store.read() as q:
            rows = [outbox_view(r) for r in await q.outbox.list(args.status, limit=args.limit)]
        _print_rows(rows, args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_outbox_retry(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway

    async def run(gw: "Gateway") -> int:
        rec = await gw.deliverer.retry(args.id)
        async with gw.store.read() as q:
            dest = await q.destinations.get(rec.destination_id)
        await gw.authority.events.record("outbox_retry", "success", actor=_cli_actor(), entry=rec.id,
                                         protocol_config=dest.protocol_config if dest else None)
        print(f"outbox entry {rec.id} is due now (the running gateway delivers it)", file=sys.stderr)
        return 0
    return await _with_gateway(args, run)


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    dist = sub.add_parser("distribution", help="push issued certificates to HTTPS destinations").add_subparsers(
        dest="distribution_command", required=True)
    s = dist.add_parser("add", parents=[common], help="a destination for a protocol configuration's certificates")
    s.add_argument("config", help="protocol configuration id")
    s.add_argument("url", help="https:// endpoint that receives a JSON POST per certificate")
    s.add_argument("--user", help="HTTP Basic user at the destination")
    s.add_argument("--password-env", help="environment variable holding that user's password")
    s.add_argument("--password-stdin", action="store_true", help="read that password from stdin")
    s.add_argument("--client-cert", help="PEM client certificate for TLS authentication")
    s.add_argument("--client-key", help="its PEM private key (sealed in the store)")
    s.add_argument("--trust", help="PEM bundle the destination's TLS certificate must chain to (default: system)")
    s.add_argument("--chain", action="store_true", help="send the CA chain with each certificate")
    s.add_argument("--revocations", action="store_true", help="also announce revocations and holds")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_add)
    s = dist.add_parser("list", parents=[common], help="destinations (never their secrets)")
    s.add_argument("--config", help="only this configuration's")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_list)
    s = dist.add_parser("remove", parents=[common], help="remove a destination")
    s.add_argument("id", help="destination id")
    s.set_defaults(fn=cmd_remove)

    box = sub.add_parser("outbox", help="deliveries to distribution destinations").add_subparsers(
        dest="outbox_command", required=True)
    s = box.add_parser("list", parents=[common], help="newest first")
    s.add_argument("--status", choices=("pending", "delivered", "failed"), help="only this state")
    s.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_outbox_list)
    s = box.add_parser("retry", parents=[common], help="deliver a pending or failed entry now")
    s.add_argument("id", help="outbox entry id")
    s.set_defaults(fn=cmd_outbox_retry)
