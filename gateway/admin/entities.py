"""Admin routes for end entities: list, inspect, and change status (deactivate, decommission)."""

from __future__ import annotations

from aiohttp import web

from ..authority import ENTITY_STATES
from ..errors import NotFound
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, page, read_json
from .spec import PAGE, Query, Reply, Route
from .views import entity_view


async def list_entities(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    status = args.text("status", choices=ENTITY_STATES)
    protocol_config = args.text("protocol_config")
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        records = await q.entities.list(status, protocol_config, limit=limit + 1, offset=offset)
    items = [entity_view(r) for r in records[:limit]]
    return web.json_response(page(items, limit, offset, more=len(records) > limit))


async def get_entity(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    entity_id = request.match_info["id"]
    async with request.app[GATEWAY].store.read() as q:
        rec = await q.entities.get(entity_id)
    if rec is None:
        raise NotFound(f"no end entity {entity_id}")
    return web.json_response(entity_view(rec))


async def set_status(request: web.Request) -> web.Response:
    """The entity with its new status and what became of its certificates, so an
    operator decommissioning without ``revoke_certificates`` sees how many stay valid."""
    f = Fields(await read_json(request))
    status = f.required_text("status", choices=ENTITY_STATES)
    revoke = f.flag("revoke_certificates", default=False)
    f.done()
    change = await request.app[GATEWAY].authority.change_entity_status(
        request.match_info["id"], status, actor(request), revoke_certificates=bool(revoke),
    )
    return web.json_response({
        **entity_view(change.entity),
        "certificates": {"revoked": change.revoked, "failed": change.failed,
                         "remaining_valid": change.remaining_valid},
    })


_TAG = "End entities"

ROUTES = (
    Route("GET", "/end-entities", list_entities, "listEndEntities", "List end entities (by name)", _TAG,
          (Reply(200, "End entities", "EndEntityList"),),
          query=(*PAGE,
                 Query("status", {"type": "string", "enum": list(ENTITY_STATES)}, "Only entities in this state."),
                 Query("protocol_config", {"type": "string"}, "Only entities of this protocol configuration."))),
    Route("GET", "/end-entities/{id}", get_entity, "getEndEntity", "One end entity", _TAG,
          (Reply(200, "The end entity", "EndEntity"),), errors=(404,)),
    Route("POST", "/end-entities/{id}/status", set_status, "setEndEntityStatus",
          "Activate, deactivate or decommission an end entity (decommissioning is final; with "
          "revoke_certificates its certificates in force are revoked, reason cessationOfOperation)", _TAG,
          (Reply(200, "The end entity with its new status and its certificates' count", "EndEntityStatusChange"),),
          body="EndEntityStatus", errors=(404, 409)),
)
