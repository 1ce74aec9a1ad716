"""Admin route for the audit trail."""

from __future__ import annotations

from aiohttp import web

from ..store.records import EventFilter
from ..web.keys import GATEWAY
from .inputs import QueryArgs, page
from .openapi import SERIAL
from .spec import PAGE, Query, Reply, Route
from .views import event_view


def _configuration(args: QueryArgs) -> tuple[str | None, bool]:
    """``configuration`` is the short name of ``protocol_config``; both filter, so two
    different ones match nothing. Returns (id, whether anything can match)."""
    long, short = args.text("protocol_config"), args.text("configuration")
    if long is not None and short is not None and long != short:
        return long, False
    return (long if long is not None else short), True


async def list_events(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    configuration, satisfiable = _configuration(args)
    flt = EventFilter(
        type=args.text("type"),
        status=args.text("status", choices=("success", "failure", "pending")),
        entity_id=args.text("entity"),
        protocol_config=configuration,
        ca_id=args.text("ca"),
        serial=args.serial("serial"),
        since=args.time("since"),
    )
    args.done()
    records = []
    if satisfiable:
        async with request.app[GATEWAY].store.read() as q:
            records = await q.events.list(flt, limit=limit + 1, offset=offset)
    items = [event_view(r) for r in records[:limit]]
    return web.json_response(page(items, limit, offset, more=len(records) > limit))


ROUTES = (
    Route("GET", "/events", list_events, "listEvents", "Audit events (newest first)", "Events",
          (Reply(200, "Events", "EventList"),),
          query=(*PAGE,
                 Query("type", {"type": "string"}, "Event type (issue, revoke, approve, entity_inactive, ...)."),
                 Query("status", {"type": "string", "enum": ["success", "failure", "pending"]}, "Outcome."),
                 Query("entity", {"type": "string"}, "End entity id."),
                 Query("protocol_config", {"type": "string"}, "Protocol configuration id."),
                 Query("configuration", {"type": "string"},
                       "Same as protocol_config (both given and different: nothing matches)."),
                 Query("ca", {"type": "string"}, "CA id."),
                 Query("serial", SERIAL, "Certificate serial (hex)."),
                 Query("since", {"type": "string", "format": "date-time"},
                       "At or after this time (ISO 8601; UTC when no offset)."))),
)
