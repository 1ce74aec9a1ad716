"""Routes of the MDM web service: ``/mdmws/<config-id>/AdminService`` (POST: SOAP;
``GET ?wsdl``: the WSDL), on the HTTPS listener only (passwords ride on it).

An unknown or disabled configuration is a plain 404, like any path that serves nothing.
"""

from __future__ import annotations

from aiohttp import web

from gateway.door import ProtocolConfigRecord, door, is_configuration_id
from gateway.edge.body import BodyTooLarge, read_limited

from .faults import MdmFault
from .service import PROTOCOL, MdmService, admin_service_url
from .soap import MAX_BYTES, fault_response
from .wsdl import wsdl

SERVICE: web.AppKey[MdmService] = web.AppKey("mdm_service", MdmService)


async def _record(request: web.Request) -> ProtocolConfigRecord:
    config_id = request.match_info["config_id"]
    if not is_configuration_id(config_id):
        raise web.HTTPNotFound(text="no such MDM configuration\n")
    rec = await door(request, PROTOCOL).find_configuration(config_id)
    if rec is None or not rec.enabled:
        raise web.HTTPNotFound(text="no such MDM configuration\n")
    return rec


async def get_wsdl(request: web.Request) -> web.Response:
    if "wsdl" not in {k.lower() for k in request.query}:
        raise web.HTTPBadRequest(text="POST SOAP messages here; GET ?wsdl for the service description\n")
    rec = await _record(request)
    return web.Response(body=wsdl(admin_service_url(door(request, PROTOCOL).config.https_url, rec.id)), content_type="text/xml",
                        charset="utf-8")


async def post_soap(request: web.Request) -> web.Response:
    rec = await _record(request)
    try:
        data = await read_limited(request, MAX_BYTES)
    except BodyTooLarge as exc:
        return fault_response(MdmFault("MalformedMessage", exc.detail))
    return await request.config_dict[SERVICE].handle(request, rec, data)


def mount(app: web.Application) -> None:
    app[SERVICE] = MdmService(door(app, PROTOCOL))
    app.router.add_get("/mdmws/{config_id}/AdminService", get_wsdl)
    app.router.add_post("/mdmws/{config_id}/AdminService", post_soap)
