"""Run the HTTPS and plain-HTTP listeners until a signal, then shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from ..logs import emit_banner, quiet_client_http_errors
from ..config import Config
from ..errors import GatewayError
from ..runtime import Gateway
from .app import create_http_app, create_https_app
from .tls import load_pem_bundle, server_context
from .unready import when_reachable
from .workers import bind_listeners, watch_parent

log = logging.getLogger(__name__)


@dataclass
class Listeners:
    https: web.AppRunner
    http: web.AppRunner

    async def stop(self) -> None:
        await self.https.cleanup()
        await self.http.cleanup()


async def start_listeners(gw: Gateway, sockets: tuple[socket.socket, socket.socket] | None = None) -> Listeners:
    """Bind the configured host and ports, or serve on ``sockets`` (HTTPS, HTTP) that a
    parent process bound (worker processes, see workers.py)."""
    cfg = gw.config
    quiet_client_http_errors()  # a client's malformed HTTP is its error: one WARNING line
    client_cas = gw.cas.trust_anchors()
    for path in cfg.tls.client_trust_anchors:
        client_cas.extend(load_pem_bundle(cfg.path(path)))
    ssl_ctx = server_context(
        cfg.path(cfg.tls.certificate), cfg.path(cfg.tls.key), client_cas,
        cfg.tls.request_client_certificate,
    )
    https = web.AppRunner(create_https_app(gw), shutdown_timeout=cfg.server.shutdown_timeout, access_log=None)
    http = web.AppRunner(create_http_app(gw), shutdown_timeout=cfg.server.shutdown_timeout, access_log=None)
    await https.setup()
    await http.setup()
    if sockets is not None:
        await web.SockSite(https, sockets[0], ssl_context=ssl_ctx).start()
        await web.SockSite(http, sockets[1]).start()
    else:
        await web.TCPSite(https, cfg.server.host, cfg.server.https_port, ssl_context=ssl_ctx).start()
        await web.TCPSite(http, cfg.server.host, cfg.server.http_port).start()
    return Listeners(https, http)


def _unready_https(cfg: Config, sock: socket.socket) -> tuple[socket.socket, ssl.SSLContext] | None:
    """The HTTPS socket and a TLS context for answering 503 before the store opens: the
    listener's own certificate (a file, no store needed), no client certificates. None,
    with one line logged, if the files cannot be loaded (the listener then waits)."""
    try:
        return sock, server_context(cfg.path(cfg.tls.certificate), cfg.path(cfg.tls.key), [], False)
    except (OSError, ssl.SSLError) as exc:
        log.warning("HTTPS cannot answer not-ready before the store opens: %s", exc)
        return None


async def serve(cfg: Config, banner: Callable[[Gateway], Awaitable[str]] | None = None,
                sockets: tuple[socket.socket, socket.socket] | None = None, worker: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``shutdown_timeout`` to finish.
    While the store is unreachable at start, answer 503 and wait for it (:mod:`.unready`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if worker is not None:
        watch_parent(stop.set)
    if sockets is None:
        https_sock, http_sock = bind_listeners(cfg)
        sockets = (https_sock, http_sock)
    gw = await when_reachable(lambda: Gateway.open(cfg), sockets[1], stop, https=_unready_https(cfg, sockets[0]))
    if gw is None:  # stopped before the store ever answered
        return
    try:
        gw.cas.require_startable()
        listeners = await start_listeners(gw, sockets)
    except BaseException:
        await gw.close()
        raise
    gw.start_background()
    if banner is not None:
        try:
            emit_banner(await banner(gw))
        except GatewayError as exc:  # the store went away again: serving (503s) goes on
            log.warning("no banner: %s", exc.detail)
    log.info("%s on %s and %s (event loop: %s)", "gateway listening" if worker is None else f"worker {worker} serving",
             gw.config.https_url, gw.config.http_url, type(loop).__module__.split(".")[0])
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await listeners.stop()
        await gw.close()
