"""Admin route for the audit trail."""

from __future__ import annotations

from aiohttp import web

from ..store.records import EventFilter
from ..web.keys import GATEWAY
from .inputs import QueryArgs, page
from .spec import PAGE, Query, Reply, Route
from .views import event_view


async def list_events(request: web.Request) -> web.Response:
    q = QueryArgs(request)
    limit, offset = q.page()
    flt = EventFilter(
        type=q.text("type"),
        status=q.text("status", choices=("success", "failure", "pending")),
        entity_id=q.text("entity"),
        protocol_config=q.text("protocol_config"),
        serial=q.text("serial"),
        since=q.time("since"),
    )
    q.done()
    records = await request.app[GATEWAY].store.list_events(flt, limit=limit + 1, offset=offset)
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
                 Query("serial", {"type": "string"}, "Certificate serial (hex)."),
                 Query("since", {"type": "string", "format": "date-time"},
                       "At or after this time (ISO 8601; UTC when no offset)."))),
)
