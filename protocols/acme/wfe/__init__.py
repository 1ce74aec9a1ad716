"""The ACME web front end: a sub-app at ``/acme/`` on the HTTPS listener.

One directory per ACME protocol configuration: ``/acme/<config-id>/directory``.
The middleware here is the only place that writes error responses (problem
documents) and the headers every ACME response carries: a fresh
``Replay-Nonce`` on POSTs and newNonce, ``Cache-Control: no-store``, and
``Link: rel="index"`` to the directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.door import Door, once_more_if_connection_lost
from gateway.errors import ErrorKind, GatewayError

from .. import problems
from ..problems import Problem
from . import accounts, authorizations, directory, orders, revocation
from .context import RUNTIME, runtime
from .runtime import AcmeRuntime

log = logging.getLogger("gateway.acme")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Tap = Callable[[web.Request, bytes, web.Response], None]

TAPS: list[Tap] = []
"""Observers of ACME exchanges (request, request body, response); tests record real
client traffic with them. Empty in production, and then free."""


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        body=json.dumps(problem.to_json()).encode(), status=problem.status,
        headers={"Content-Type": problems.CONTENT_TYPE, **problem.headers},
    )


def _directory_url(request: web.Request, rt: AcmeRuntime) -> str | None:
    config_id = request.match_info.get("config")
    if not config_id:
        return None
    acme = rt.cached(config_id)
    origin = acme.settings.external_url if acme is not None and acme.settings.external_url else None
    return f"{origin or 'https://' + request.host}/acme/{config_id}/directory"


async def _run(request: web.Request, handler: Handler) -> web.StreamResponse:
    """GET and HEAD (directory, newNonce, renewal info) only read: one cut by a lost
    store connection runs once more on a fresh one (POSTs never: they may have written)."""
    if request.method not in ("GET", "HEAD"):
        return await handler(request)
    return await once_more_if_connection_lost(lambda: handler(request), f"ACME {request.method} {request.path}")


@web.middleware
async def acme_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    problem: Problem | None = None
    try:
        response = await _run(request, handler)
    except Problem as raised:
        problem = raised
    except GatewayError as exc:
        if exc.kind is ErrorKind.INTERNAL:
            log.error("ACME %s %s failed: %r", request.method, request.path, exc)
        problem = problems.from_gateway_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        problem = Problem("malformed", exc.reason, exc.status, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on ACME %s %s", request.method, request.path)
        problem = problems.server_internal()
    rt = runtime(request)
    if problem is not None:
        response = problem_response(problem)
        config_id = request.match_info.get("config")
        rt.door.count_error(config_id if config_id and rt.cached(config_id) else None, problem.type)
    assert isinstance(response, web.Response)
    name = request.match_info.route.name or ""
    if request.method == "POST" or name == "acme-new-nonce":
        response.headers["Replay-Nonce"] = rt.mint_nonce()
    response.headers["Cache-Control"] = "public, max-age=0, no-cache" if name == "acme-directory" else "no-store"
    index = _directory_url(request, rt)
    if index and name != "acme-directory":
        response.headers.add("Link", f'<{index}>;rel="index"')
    if TAPS:
        body = await request.read() if request.can_read_body or request.body_exists else b""
        for tap in list(TAPS):
            tap(request, body, response)
    return response


def create_app(door: Door) -> web.Application:
    """The ACME sub-app on ``door`` (the ACME protocol's door into the core); its
    runtime lives under :data:`RUNTIME` and runs while the application does."""
    app = web.Application(middlewares=[acme_middleware], client_max_size=door.config.server.max_body_bytes)
    app[RUNTIME] = AcmeRuntime(door)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        rt.start()
        try:
            yield
        finally:
            await rt.close()

    app.cleanup_ctx.append(lifecycle)
    r = app.router
    c = "/{config}"
    r.add_get(c + "/directory", directory.directory, name="acme-directory")
    r.add_get(c + "/new-nonce", directory.new_nonce, name="acme-new-nonce")
    r.add_get(c + "/renewal-info/{certid}", directory.renewal_info, name="acme-renewal-info")
    r.add_post(c + "/new-account", accounts.new_account, name="acme-new-account")
    r.add_post(c + "/acct/{account}", accounts.account, name="acme-account")
    r.add_post(c + "/acct/{account}/orders", accounts.orders, name="acme-orders")
    r.add_post(c + "/key-change", accounts.key_change, name="acme-key-change")
    r.add_post(c + "/new-order", orders.new_order, name="acme-new-order")
    r.add_post(c + "/order/{order}", orders.order, name="acme-order")
    r.add_post(c + "/order/{order}/finalize", orders.finalize, name="acme-finalize")
    r.add_post(c + "/cert/{serial}", orders.certificate, name="acme-certificate")
    r.add_post(c + r"/cert/{serial}/{alt:\d+}", orders.certificate, name="acme-certificate-alternate")
    r.add_post(c + "/new-authz", authorizations.new_authz, name="acme-new-authz")
    r.add_post(c + "/authz/{authz}", authorizations.authorization, name="acme-authz")
    r.add_post(c + "/chall/{authz}/{type}", authorizations.challenge, name="acme-challenge")
    r.add_post(c + "/revoke-cert", revocation.revoke_cert, name="acme-revoke-cert")
    return app


__all__ = ["TAPS", "create_app", "AcmeRuntime"]
