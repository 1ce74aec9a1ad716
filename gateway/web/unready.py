"""Starting while the store is unreachable: not ready until it answers, then serving.

A gateway on PostgreSQL may start before its database (a host reboot, a failover): it
must not exit, or a supervisor restarts it in a loop and a load balancer sees a closed
port instead of a clear "not ready". Until the store opens, both listeners answer
``/healthz`` (and everything else) 503 with Retry-After (HTTPS with the listener's
certificate from the data directory, which needs no store; no client certificate is
asked for), and the gateway tries again with a backoff up to :data:`MAX_DELAY`
seconds, logging one line per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from typing import Awaitable, Callable

from aiohttp import web

from ..errors import ErrorKind, GatewayError
from ..runtime import Gateway

log = logging.getLogger(__name__)

MAX_DELAY = 30.0
RETRY_AFTER_SECONDS = 5
"""What a 503 (store unavailable, CA not ready) asks the client to wait before retrying."""

NOT_READY = {"status": "not-ready", "reason": "the store is unreachable"}


def store_unreachable(exc: GatewayError) -> bool:
    return exc.kind is ErrorKind.UNAVAILABLE


async def _answer_not_ready(request: web.Request) -> web.Response:
    return web.json_response(NOT_READY, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _serve_not_ready(http_sock: socket.socket, https: tuple[socket.socket, ssl.SSLContext] | None,
                            ) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer_not_ready)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    # A duplicate of the socket: stopping this site closes its socket, and the real
    # listeners serve on the original afterwards without a moment of "connection refused".
    await web.SockSite(runner, socket.socket(fileno=os.dup(http_sock.fileno()))).start()
    if https is not None:
        https_sock, context = https
        await web.SockSite(runner, socket.socket(fileno=os.dup(https_sock.fileno())), ssl_context=context).start()
    return runner


async def when_reachable(open_: Callable[[], Awaitable[Gateway]], http_sock: socket.socket,
                         stop: asyncio.Event, *, first_delay: float = 1.0,
                         https: tuple[socket.socket, ssl.SSLContext] | None = None) -> Gateway | None:
    """``open_()`` once the store answers (None if ``stop`` is set first), answering
    503 on ``http_sock`` (and on ``https``: its socket and TLS context) meanwhile.
    Errors other than an unreachable store propagate."""
    delay = first_delay
    runner: web.AppRunner | None = None
    try:
        while True:
            try:
                return await open_()
            except GatewayError as exc:
                if not store_unreachable(exc):
                    raise
                if runner is None:
                    runner = await _serve_not_ready(http_sock, https)
                log.warning("store unreachable (%s): not ready; trying again in %.0f s", exc.detail, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return None
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, MAX_DELAY)
    finally:
        if runner is not None:
            await runner.cleanup()
