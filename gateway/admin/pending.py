"""Admin routes for requests held for approval: list, inspect, approve (issues), reject."""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound
from ..store.records import serial_hex
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, page_in_memory, read_json
from .spec import PAGE, Query, Reply, Route
from .views import issued_view, request_view

REQUEST_STATUSES = ("pending", "approved", "upstream", "rejected", "issued")


async def list_requests(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    status = args.text("status", choices=REQUEST_STATUSES)
    ca_id = args.text("ca")
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        records = await q.requests.list(status, ca_id)
    return web.json_response(page_in_memory([request_view(r) for r in records], limit, offset))


async def get_request(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    request_id = request.match_info["id"]
    async with request.app[GATEWAY].store.read() as q:
        rec = await q.requests.get(request_id)
    if rec is None:
        raise NotFound(f"no pending request {request_id}")
    return web.json_response(request_view(rec))


async def approve(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    Fields(await read_json(request, optional=True)).done()
    issued = await gw.authority.approve(request.match_info["id"], actor(request))
    rec = await gw.authority.certificate(serial_hex(issued.serial))
    return web.json_response(issued_view(rec, issued))


async def reject(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request))
    reason = f.required_text("reason")
    f.done()
    request_id = request.match_info["id"]
    await gw.authority.reject(request_id, actor(request), reason)
    async with gw.store.read() as q:
        rec = await q.requests.get(request_id)
    if rec is None:
        raise NotFound(f"no pending request {request_id}")
    return web.json_response(request_view(rec))


_TAG = "Requests"

ROUTES = (
    Route("GET", "/requests", list_requests, "listRequests", "Requests held for approval (oldest first)", _TAG,
          (Reply(200, "Requests", "RequestList"),),
          query=(*PAGE,
                 Query("status", {"type": "string", "enum": list(REQUEST_STATUSES)},
                       "Only requests in this state (pending: the approval queue)."),
                 Query("ca", {"type": "string"}, "Only requests for this CA."))),
    Route("GET", "/requests/{id}", get_request, "getRequest", "One held request with its CSR", _TAG,
          (Reply(200, "The request", "Request"),), errors=(404,)),
    Route("POST", "/requests/{id}/approve", approve, "approveRequest", "Approve a pending request and issue", _TAG,
          (Reply(200, "The issued certificate with its chain", "IssuedCertificate"),),
          body="Empty", body_optional=True, errors=(403, 404, 409, 503)),
    Route("POST", "/requests/{id}/reject", reject, "rejectRequest", "Reject a pending request for good", _TAG,
          (Reply(200, "The rejected request", "Request"),), body="RejectRequest", errors=(404, 409)),
)
