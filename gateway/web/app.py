"""App factory: one aiohttp application served on the HTTPS and the plain HTTP listener.

Errors are mapped here for the generic routes: a :class:`GatewayError` becomes a JSON
``{"error", "detail"}`` body with the kind's HTTP status; anything unexpected is
logged with its traceback and answered with a bare 500 that reveals nothing.
Protocol sub-apps install their own error mapping for their wire formats.
"""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import HTTP_STATUS, GatewayError, Unauthorized
from ..metrics import HTTP_LATENCY, HTTP_REQUESTS, refresh_from_store, scrape_registry
from ..runtime import Gateway
from ..status import http as status_http
from ..store.errors import once_more_if_connection_lost
from .keys import GATEWAY
from .unready import NOT_READY, RETRY_AFTER_SECONDS, store_unreachable
from .workers import worker_index

log = logging.getLogger("gateway.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: GatewayError) -> web.Response:
    status = HTTP_STATUS[exc.kind]
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return web.json_response({"error": exc.kind.value, "detail": exc.detail}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal", "detail": "internal server error"}, status=500)


def _safe_to_run_again(request: web.Request) -> bool:
    """A request of the core's own read routes (CRL, CA certificates, OCSP GET and POST,
    ``/healthz``, ``/metrics``): their only writes (a due CRL, an OCSP signer) check
    again under a lock before writing, so a second run is harmless. Protocol sub-apps
    map their own errors, and a GET there may enroll (SCEP PKIOperation), so not those."""
    if len(request.match_info.apps) != 1:
        return False
    return request.method in ("GET", "HEAD") or request.match_info.route.handler is status_http.ocsp_post


@web.middleware
async def retry_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A read cut by a lost store connection (PostgreSQL restarted, the backend
    terminated) is run once more on a fresh one, so the client sees an answer instead
    of a 503; a second loss is the 503 with Retry-After (:func:`error_response`)."""
    if not _safe_to_run_again(request):
        return await handler(request)
    return await once_more_if_connection_lost(lambda: handler(request), f"{request.method} {request.path}")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(route).observe(time.perf_counter() - start)
        log.info(
            "%s %s %d", request.method, request.path, status,
            extra={"method": request.method, "path": request.path, "status": status,
                   "remote": request.remote, "tls": request.secure},
        )


async def healthz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        await gw.store.retrying(lambda q: q.cas.list())  # the store answers (a lost connection: once more)
    except GatewayError as exc:
        if not store_unreachable(exc):
            raise
        # not ready: a load balancer sends requests elsewhere until the store answers again
        return web.json_response(NOT_READY, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    body: dict[str, object] = {"status": "ok", "cas": [ca.id for ca in gw.cas.issuing()]}
    worker = worker_index()
    if worker is not None:
        body["worker"] = worker  # which of the [server] workers answered
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    """The gateway's metrics (every worker's summed, with ``[server] workers > 1``), with the
    store-derived gauges read now. ``[server] metrics = "key"``: for any admin API key
    (an auditor's will do) or registered client certificate, on the HTTPS listener only."""
    gw = request.app[GATEWAY]
    if gw.config.server.metrics == "key":
        from ..admin.auth import REALM, authenticate

        try:
            await authenticate(request, gw)
        except Unauthorized as exc:
            return web.json_response({"error": exc.kind.value, "detail": exc.detail}, status=401,
                                     headers={"WWW-Authenticate": REALM})
    await refresh_from_store(gw)
    return web.Response(body=generate_latest(scrape_registry()), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _add_metrics(app: web.Application, gateway: Gateway, *, secure: bool) -> None:
    """``/metrics`` where ``[server] metrics`` puts it: a key never travels in plain HTTP."""
    access = gateway.config.server.metrics
    if access == "public" or (access == "key" and secure):
        app.router.add_get("/metrics", metrics)


def _base_app(gateway: Gateway) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, errors_middleware, retry_middleware],
        client_max_size=gateway.config.server.max_body_bytes,
    )
    app[GATEWAY] = gateway
    from ..composition import adapters

    from ..door import DOORS

    app[DOORS] = {adapter.name: gateway.door(adapter.name) for adapter in adapters()}
    app.router.add_get("/healthz", healthz)
    status_http.add_routes(app)
    return app


def create_https_app(gateway: Gateway) -> web.Application:
    """Everything: admin API, protocols, status routes (the HTTPS listener)."""
    from ..composition import adapters

    from ..admin.api import create_admin_app

    app = _base_app(gateway)
    _add_metrics(app, gateway, secure=True)
    admin = create_admin_app(gateway)
    for adapter in adapters():
        adapter.mount_admin(admin)
    app.add_subapp("/admin/", admin)
    if gateway.config.console.enabled:
        from ..console.app import create_console_app

        app.add_subapp("/console/", create_console_app(gateway))
        app.router.add_get("/", _to_console)
        app.router.add_get("/console", _to_console)
    for adapter in adapters():
        adapter.mount(app, secure=True)
    return app


async def _to_console(request: web.Request) -> web.StreamResponse:
    """``/`` on the HTTPS listener: the admin console."""
    raise web.HTTPFound("/console/")


def create_http_app(gateway: Gateway) -> web.Application:
    """Plain HTTP: CRL, OCSP, AIA, health, and protocols that must run without TLS (SCEP)."""
    from ..composition import adapters

    app = _base_app(gateway)
    _add_metrics(app, gateway, secure=False)
    app.router.add_get("/.well-known/acme-challenge/{token}", acme_challenge)
    for adapter in adapters():
        adapter.mount(app, secure=False)
    return app


async def acme_challenge(request: web.Request) -> web.Response:
    """http-01 for an upstream ACME CA validating a name this gateway ordered (RFC 8555 8.3)."""
    answer = request.app[GATEWAY].cas.http01.get(request.match_info["token"])
    if answer is None:
        raise web.HTTPNotFound(text="no such challenge\n")
    return web.Response(text=answer, content_type="application/octet-stream")
