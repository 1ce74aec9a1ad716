"""``gateway notify``: notification handlers (gateway/notifications.py). A webhook secret or
SMTP password given here is sealed in the store and never printed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .runtime import Gateway


def _view(rec: Any) -> dict[str, Any]:
    s = rec.settings
    target = s.get("url") if rec.action == "webhook" else ",".join(s.get("to") or [])
    return {"id": rec.id, "name": rec.name, "events": ",".join(rec.events), "action": rec.action, "target": target,
            "conditions": ",".join(f"{k}={v}" for k, v in sorted(rec.conditions.items())) or "-",
            "expiring_days": rec.expiring_days, "enabled": rec.enabled}


async def cmd_add(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _print_rows, _with_gateway, read_secret
    from .notifications import EVENTS, handler_settings, new_id
    from .store.records import NotificationHandlerRecord

    events = args.event or []
    unknown = sorted(set(events) - set(EVENTS))
    if not events or unknown:
        raise ConfigError(f"--event is one of {list(EVENTS)} (repeatable)")
    if "expiring" in events and not args.expiring_days:
        raise ConfigError("--event expiring needs --expiring-days N")
    action = "webhook" if args.webhook else "email" if args.email_to else None
    if action is None:
        raise ConfigError("give --webhook URL or --email-to ADDRESS")

    async def run(gw: "Gateway") -> int:
        handler_id = new_id()
        settings = handler_settings(
            handler_id, gw.cas.sealer("distribution"), action, url=args.webhook,
            secret=read_secret(args.secret_env, args.secret_stdin and action == "webhook"),
            smtp_host=args.smtp_host, smtp_port=args.smtp_port, starttls=not args.smtp_no_starttls,
            smtp_user=args.smtp_user,
            smtp_password=read_secret(args.smtp_password_env, args.smtp_password_stdin and action == "email"),
            sender=args.sender, to=args.email_to or [], trust_pem=Path(args.trust).read_text() if args.trust else None,
            subject=args.subject, body=args.body)
        conditions = {k: v for k, v in (("protocol_config", args.config), ("ca", args.ca), ("profile", args.profile),
                                        ("status", args.status)) if v}
        rec = NotificationHandlerRecord(id=handler_id, name=args.name, events=events, conditions=conditions,
                                        action=action, settings=settings, expiring_days=args.expiring_days)
        async with gw.store.transaction() as q:
            if await q.notifications.by_name(args.name) is not None:
                raise ConfigError(f"a notification handler named {args.name!r} exists")
            await q.notifications.insert(rec)
        await gw.authority.events.record("notification_create", "success", actor=_cli_actor(), handler=args.name,
                                         protocol_config=args.config, action=action)
        _print_rows([_view(rec)], args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_list(args: argparse.Namespace) -> int:
    from .cli import _print_rows, _with_gateway

    async def run(gw: "Gateway") -> int:
        async with gw.store.read() as q:
            _print_rows([_view(r) for r in await q.notifications.list()], args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_remove(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway

    async def run(gw: "Gateway") -> int:
        async with gw.store.transaction() as q:
            rec = await q.notifications.by_name(args.name)
            if rec is None or not await q.notifications.delete(rec.id):
                raise ConfigError(f"no notification handler {args.name!r}")
        await gw.authority.events.record("notification_delete", "success", actor=_cli_actor(), handler=args.name)
        print(f"removed notification handler {args.name}", file=sys.stderr)
        return 0
    return await _with_gateway(args, run)


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    notify = sub.add_parser("notify", help="notification handlers: webhooks and e-mail on enrollment events") \
        .add_subparsers(dest="notify_command", required=True)
    s = notify.add_parser("add", parents=[common], help="a handler: events, conditions, a webhook or an e-mail")
    s.add_argument("name", help="handler name")
    s.add_argument("--event", action="append", help="issued|pending|rejected|revoked|expiring (repeatable)")
    s.add_argument("--expiring-days", type=int, help="with --event expiring: announce certificates this close to expiry")
    s.add_argument("--config", help="only events of this protocol configuration")
    s.add_argument("--ca", help="only events of this CA")
    s.add_argument("--profile", help="only certificates of this profile")
    s.add_argument("--status", help="only events with this status (success, pending)")
    s.add_argument("--webhook", help="https:// URL that receives a signed JSON POST")
    s.add_argument("--secret-env", help="environment variable holding the webhook's signing secret (>= 16 chars)")
    s.add_argument("--secret-stdin", action="store_true", help="read the signing secret from stdin")
    s.add_argument("--email-to", action="append", help="recipient address (repeatable)")
    s.add_argument("--from", dest="sender", help="sender address")
    s.add_argument("--smtp-host", help="SMTP server")
    s.add_argument("--smtp-port", type=int, default=587, help="SMTP port (default 587)")
    s.add_argument("--smtp-user", help="SMTP user (AUTH after STARTTLS)")
    s.add_argument("--smtp-password-env", help="environment variable holding the SMTP password")
    s.add_argument("--smtp-password-stdin", action="store_true", help="read the SMTP password from stdin")
    s.add_argument("--smtp-no-starttls", action="store_true", help="do not STARTTLS (refused with --smtp-user)")
    s.add_argument("--trust", help="PEM bundle the webhook's or SMTP server's TLS certificate must chain to")
    s.add_argument("--subject", help="e-mail subject template (${event}, ${serial}, ${subject}, ...)")
    s.add_argument("--body", help="message template (webhook 'message', e-mail body)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_add)
    s = notify.add_parser("list", parents=[common], help="handlers (never their secrets)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(fn=cmd_list)
    s = notify.add_parser("remove", parents=[common], help="remove a handler by name")
    s.add_argument("name", help="handler name")
    s.set_defaults(fn=cmd_remove)
