"""The admin API: a JSON sub-app mounted at ``/admin/`` on the HTTPS listener only.

Two middlewares wrap every route. The outer one turns every failure into a JSON
``{"error", "detail"}`` body: a :class:`GatewayError` gets its kind's HTTP status,
aiohttp's own HTTP errors (404, 405, 413) keep theirs, anything else is logged and
answered with a bare 500. The inner one authenticates (see :mod:`.auth`) every
route except the OpenAPI document and records who is calling, so each change the
admin API makes is audited with its actor.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..errors import HTTP_STATUS, ErrorKind, GatewayError
from ..runtime import Gateway
from ..web.keys import GATEWAY
from . import cas, certificates, configs, entities, events, keygen, keys, pending, profiles
from .auth import PRINCIPAL, REALM, authenticate, authorize
from .roles import area_of
from .inputs import MAX_BODY
from . import openapi
from .openapi import build_document
from .spec import Handler, Reply, Route

log = logging.getLogger("gateway.admin")

OPENAPI = web.AppKey("admin_openapi", dict)


def extend(admin: web.Application, routes: tuple[Route, ...], schemas: dict[str, dict[str, Any]], tag: str, *,
           path_schemas: dict[str, dict[str, Any]] | None = None) -> None:
    """A protocol's ``mount_admin``: register its routes and add them, their schemas and
    its tag to the admin OpenAPI document (``path_schemas``: schemas of its own path
    parameters, by name), so the middleware authenticates them and the document lists them."""
    import copy

    # copy on write, level by level: the document's nested parts may be module constants
    # (openapi.SCHEMAS), and a deep copy of the whole document per call was half of the
    # cost of building an app
    old = admin[OPENAPI]
    doc = dict(old)
    doc["components"] = {**old["components"], "schemas": {**old["components"]["schemas"],
                                                          **copy.deepcopy(schemas)}}
    paths = dict(old["paths"])
    for route in routes:
        admin.router.add_route(route.method, route.path, route.handler, name=route.operation_id)
        op = openapi.operation(route)
        for param in op.get("parameters", []):
            if param.get("in") == "path" and param["name"] in (path_schemas or {}):
                param["schema"] = dict((path_schemas or {})[param["name"]])
        paths[route.path] = {**paths.get(route.path, {}), route.method.lower(): op}
    doc["paths"] = paths
    tags = list(old.get("tags", []))
    if tag not in [t["name"] for t in tags]:
        tags.append({"name": tag})
    doc["tags"] = tags
    admin[OPENAPI] = doc
_PUBLIC = web.AppKey("admin_public_routes", frozenset)
_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


OPENAPI_ROUTE = Route(
    "GET", "/openapi.json", openapi_document, "getOpenAPI", "This OpenAPI document", "Meta",
    (Reply(200, "OpenAPI 3.1 document", "OpenAPIDocument"),), public=True,
)

ROUTES: tuple[Route, ...] = (
    OPENAPI_ROUTE,
    *cas.ROUTES,
    *profiles.ROUTES,
    *configs.ROUTES,
    *certificates.ROUTES,
    *keygen.ROUTES,
    *entities.ROUTES,
    *pending.ROUTES,
    *events.ROUTES,
    *keys.ROUTES,
)


def _json_error(kind: str, detail: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": kind, "detail": detail}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        headers = {"WWW-Authenticate": REALM} if exc.kind is ErrorKind.UNAUTHORIZED else None
        return _json_error(exc.kind.value, exc.detail, HTTP_STATUS[exc.kind], headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        kind = _HTTP_KINDS.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        return _json_error(kind, exc.reason, exc.status, headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json_error("internal", "internal server error", 500)


_AREAS = web.AppKey("admin_route_areas", dict)
_CONSOLE = web.AppKey("admin_accepts_console_sessions", bool)


def route_area(request: web.Request) -> str | None:
    """The role area (gateway.admin.roles) of the matched route, from its path template
    (every admin route is named by its operation id); None when nothing matched (the 404
    or 405 that follows is the answer, for every role)."""
    route = request.match_info.route
    if request.match_info.http_exception is not None or not route.name:
        return None
    areas: dict[str, str] = request.app[_AREAS]
    area = areas.get(route.name)
    if area is None:
        canonical = route.resource.canonical if route.resource is not None else ""
        relative = canonical[len("/admin"):] if canonical.startswith("/admin/") else canonical
        area = areas[route.name] = area_of(relative, route.name)
    return area


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route
    if route.handler not in request.app[_PUBLIC]:
        principal = await authenticate(request, request.app[GATEWAY], console=request.app[_CONSOLE])
        area = route_area(request)
        if area is not None:
            authorize(principal, request.method, area)
        request[PRINCIPAL] = principal
    return await handler(request)


def create_admin_app(gateway: Gateway, *, console: bool = False) -> web.Application:
    """The ``/admin/`` sub-app; mount it on the HTTPS application only. ``console``: the
    copy on the console's private socket, where console sessions authenticate too."""
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=gateway.config.server.max_body_bytes,
    )
    app[GATEWAY] = gateway
    app[_CONSOLE] = console
    app[_AREAS] = {}
    from ..composition import adapters

    from ..door import DOORS

    app[DOORS] = {adapter.name: gateway.door(adapter.name) for adapter in adapters()}
    app[MAX_BODY] = gateway.config.server.max_body_bytes
    app[OPENAPI] = build_document(ROUTES)
    public: set[Any] = set()
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.operation_id)
        if route.public:
            public.add(route.handler)
    app[_PUBLIC] = frozenset(public)
    from . import console_users, outbox, statistics

    extend(app, outbox.ROUTES, outbox.SCHEMAS, outbox.TAG)
    extend(app, statistics.ROUTES, statistics.SCHEMAS, statistics.TAG)
    extend(app, console_users.ROUTES, console_users.SCHEMAS, console_users.TAG)
    return app
