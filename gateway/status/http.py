"""Plain-HTTP status routes: CRL at the CDP URL, OCSP (GET and POST), CA certificates (AIA).

These are served on both listeners; the CDP and AIA URLs in issued certificates
point at the plain HTTP one (RFC 5280 4.2.1.13: no TLS for revocation checking).
For an upstream CA the CRL and OCSP GET redirect to the upstream's (:mod:`.upstream`).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from ..errors import GatewayError, NotFound
from ..metrics import count_ocsp
from ..store.errors import connection_lost
from ..web.keys import GATEWAY
from .ocsp import error_response

OCSP_RESPONSE_TYPE = "application/ocsp-response"
RUN_AGAIN = web.RequestKey("gateway.ocsp.run_again", bool)
"""Set on a request whose OCSP answer lost its store connection once: a second loss is
answered ``internalError`` (an OCSP client's retryable answer) instead of raised again."""
MAX_OCSP_REQUEST = 64 * 1024


async def crl(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    ca_id = request.match_info["ca_id"]
    if not (await gw.cas.backend(ca_id)).capabilities.crl:  # an upstream CA: its own CRL
        where = (await gw.upstream_status.urls(ca_id)).crl
        if where is None:
            raise NotFound(f"CA {ca_id} publishes its CRL upstream, and no certificate it issued names it yet")
        raise web.HTTPFound(where)
    der = await gw.authority.crl(ca_id)
    return web.Response(
        body=der, content_type="application/pkix-crl",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def ca_certificate(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    ca_id, ext = request.match_info["ca_id"], request.match_info["ext"]
    await gw.cas.record(ca_id)
    cert = gw.cas.certificate(ca_id)
    if cert is None:
        raise NotFound(f"CA {ca_id} has no certificate yet")
    if ext == "pem":
        body = cert.public_bytes(serialization.Encoding.PEM)
        return web.Response(body=body, content_type="application/x-pem-file")
    return web.Response(body=cert.public_bytes(serialization.Encoding.DER), content_type="application/pkix-cert")


async def ocsp_post(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_OCSP_REQUEST:
        count_ocsp(None, "malformed_request")
        return _ocsp(error_response("malformed_request"))
    body = await request.read()
    return await _answer(request, body)


async def ocsp_get(request: web.Request) -> web.Response:
    # RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}
    raw = request.match_info["encoded"]
    await _redirect_upstream(request, raw)
    try:
        der = base64.b64decode(unquote(raw).replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        count_ocsp(None, "malformed_request")
        return _ocsp(error_response("malformed_request"))
    return await _answer(request, der)


async def _redirect_upstream(request: web.Request, encoded: str) -> None:
    """An upstream CA's OCSP GET goes to the responder its certificates name (RFC 6960
    A.1 keeps the request in the path, so it survives the redirect); otherwise this
    responder answers (``unauthorized`` where it is not the CA's)."""
    gw = request.app[GATEWAY]
    ca_id = request.match_info["ca_id"]
    try:
        backend = await gw.cas.backend(ca_id)
    except GatewayError:
        return  # unknown CA: answered as OCSP
    if backend.capabilities.ocsp:
        return
    where = (await gw.upstream_status.urls(ca_id)).ocsp
    if where is not None:
        raise web.HTTPFound(f"{where.rstrip('/')}/{encoded}")


async def _answer(request: web.Request, der: bytes) -> web.Response:
    gw = request.app[GATEWAY]
    ca_id = request.match_info["ca_id"]
    try:
        body = await gw.ocsp.respond(ca_id, der)  # counts what it answers
    except GatewayError as exc:
        if connection_lost(exc) and not request.get(RUN_AGAIN, False):
            request[RUN_AGAIN] = True
            raise  # the web layer's retry_middleware answers it on a fresh connection
        body = error_response("internal_error")
        count_ocsp(None, "internal_error")
    return _ocsp(body)


def _ocsp(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=OCSP_RESPONSE_TYPE)


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/crl/{ca_id}.crl", crl)
    app.router.add_get(r"/ca/{ca_id}.{ext:cer|pem}", ca_certificate)
    app.router.add_post(r"/ocsp/{ca_id}", ocsp_post)
    app.router.add_get(r"/ocsp/{ca_id}/{encoded:.+}", ocsp_get)
