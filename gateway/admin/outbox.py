"""Admin routes for certificate distribution: the destinations and the outbox (pending,
delivered, failed deliveries), and 'send it again' for a failed one. Secrets never appear."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..store.records import DestinationRecord, OutboxRecord
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, page_in_memory, read_json
from .spec import PAGE, Query, Reply, Route

OUTBOX_STATUSES = ("pending", "delivered", "failed")
TAG = "Distribution"


def outbox_view(rec: OutboxRecord) -> dict[str, Any]:
    return {"id": rec.id, "destination": rec.destination_id, "event": rec.event, "serial": rec.serial,
            "status": rec.status, "attempts": rec.attempts, "next_attempt_at": rec.next_attempt_at.isoformat(),
            "last_error": rec.last_error, "created_at": rec.created_at.isoformat(),
            "delivered_at": rec.delivered_at.isoformat() if rec.delivered_at else None}


def destination_view(rec: DestinationRecord) -> dict[str, Any]:
    s = rec.settings
    auth = "basic" if s.get("username") else "certificate" if s.get("client_certificate") else "none"
    return {"id": rec.id, "protocol_config": rec.protocol_config, "url": rec.url, "enabled": rec.enabled,
            "auth": auth, "username": s.get("username"), "include_chain": bool(s.get("include_chain")),
            "include_revocations": bool(s.get("include_revocations")), "created_at": rec.created_at.isoformat()}


async def list_outbox(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    status = args.text("status", choices=OUTBOX_STATUSES)
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        records = await q.outbox.list(status, limit=limit + offset)
    return web.json_response(page_in_memory([outbox_view(r) for r in records], limit, offset))


async def retry_outbox(request: web.Request) -> web.Response:
    Fields(await read_json(request, optional=True)).done()
    gw = request.app[GATEWAY]
    rec = await gw.deliverer.retry(request.match_info["id"])
    async with gw.store.read() as q:
        dest = await q.destinations.get(rec.destination_id)
    await gw.authority.events.record("outbox_retry", "success", actor=actor(request), entry=rec.id,
                                     protocol_config=dest.protocol_config if dest else None)
    return web.json_response(outbox_view(rec))


async def list_destinations(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    config = args.text("protocol_config")
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        records = await q.destinations.list(config)
    return web.json_response(page_in_memory([destination_view(r) for r in records], limit, offset))


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
SCHEMAS: dict[str, dict[str, Any]] = {
    "OutboxEntry": {"type": "object", "properties": {
        "id": _STR, "destination": _STR, "event": _STR, "serial": _NSTR,
        "status": {"type": "string", "enum": list(OUTBOX_STATUSES)}, "attempts": {"type": "integer"},
        "next_attempt_at": _STR, "last_error": _NSTR, "created_at": _STR, "delivered_at": _NSTR}},
    "OutboxList": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/OutboxEntry"}}}},
    "Destination": {"type": "object", "properties": {
        "id": _STR, "protocol_config": _STR, "url": _STR, "enabled": {"type": "boolean"},
        "auth": {"type": "string", "enum": ["basic", "certificate", "none"]}, "username": _NSTR,
        "include_chain": {"type": "boolean"}, "include_revocations": {"type": "boolean"}, "created_at": _STR}},
    "DestinationList": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Destination"}}}},
}

ROUTES = (
    Route("GET", "/outbox", list_outbox, "listOutbox", "Deliveries to distribution destinations (newest first)", TAG,
          (Reply(200, "Outbox entries", "OutboxList"),),
          query=(*PAGE, Query("status", {"type": "string", "enum": list(OUTBOX_STATUSES)},
                              "Only entries in this state."))),
    Route("POST", "/outbox/{id}/retry", retry_outbox, "retryOutbox", "Deliver a pending or failed entry now", TAG,
          (Reply(200, "The entry, due now", "OutboxEntry"),), body="Empty", body_optional=True, errors=(404,)),
    Route("GET", "/destinations", list_destinations, "listDestinations", "Distribution destinations", TAG,
          (Reply(200, "Destinations (no secrets)", "DestinationList"),),
          query=(*PAGE, Query("protocol_config", {"type": "string"}, "Only this configuration's."))),
)
