"""``gateway events``: the audit trail from the command line, filtered as ``GET /admin/events``.

Newest first; ``--json`` prints the same objects the admin API's ``items`` hold, so a
script can switch between the two. Reads only: listing is not itself audited.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .errors import BadRequest

if TYPE_CHECKING:
    from .runtime import Gateway

STATUSES = ("success", "failure", "pending")


def _text_row(view: dict[str, Any]) -> str:
    """One line: when, what, outcome, then only the fields the event has."""
    head = [str(view["id"]), view["created_at"] or "-", view["type"], view["status"]]
    where = {"ca": view["ca"], "config": view["protocol_config"], "serial": view["serial"],
             "entity": view["entity"], "request": view["request"]}
    detail = {k: v for k, v in view["detail"].items() if k != "actor"}
    fields = [f"actor={view['detail']['actor']}"] if view["detail"].get("actor") else []
    fields += [f"{k}={v}" for k, v in where.items() if v is not None]
    fields += [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(detail.items())]
    return "  ".join(head + fields)


async def cmd_events(args: argparse.Namespace) -> int:
    from .admin.inputs import MAX_OFFSET, MAX_PAGE, check_serial, parse_time
    from .admin.views import event_view
    from .cli import _with_gateway
    from .store.records import EventFilter

    if not 1 <= args.limit <= MAX_PAGE:
        raise BadRequest(f"--limit must be from 1 to {MAX_PAGE}")
    if not 0 <= args.offset <= MAX_OFFSET:
        raise BadRequest(f"--offset must be from 0 to {MAX_OFFSET}")
    flt = EventFilter(
        type=args.type, status=args.status, entity_id=args.entity, protocol_config=args.configuration,
        ca_id=args.ca, serial=check_serial(args.serial, "--serial") if args.serial is not None else None,
        since=parse_time(args.since, "--since") if args.since is not None else None,
    )

    async def run(gw: Gateway) -> int:
        async with gw.store.read() as q:
            records = await q.events.list(flt, limit=args.limit, offset=args.offset)
        views = [event_view(r) for r in records]
        if args.json:
            print(json.dumps(views, indent=2))
        else:
            for view in views:
                print(_text_row(view))
        return 0
    return await _with_gateway(args, run)


def add_command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("events", parents=[common], help="list recent audit events, newest first "
                       "(the filters of GET /admin/events)")
    s.add_argument("--type", help="only this event type (issue, revoke, config_update, apikey_create, ...)")
    s.add_argument("--status", choices=STATUSES, help="only this outcome")
    s.add_argument("--ca", help="only events of this CA id")
    s.add_argument("--configuration", "--config", dest="configuration",
                   help="only events of this protocol configuration id")
    s.add_argument("--entity", help="only events of this end entity id")
    s.add_argument("--serial", help="only events of this certificate (hex serial)")
    s.add_argument("--since", help="only events at or after this time (ISO 8601; UTC when no offset)")
    s.add_argument("--limit", type=int, default=100, help="at most this many events (1-500, default 100)")
    s.add_argument("--offset", type=int, default=0, help="skip this many of the newest events first")
    s.add_argument("--json", action="store_true", help="print the admin API's event objects as JSON")
    s.set_defaults(fn=cmd_events)
