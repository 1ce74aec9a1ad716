"""Run the HTTPS and plain-HTTP listeners until a signal, then shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass

from aiohttp import web

from ..logs import emit_banner, quiet_client_http_errors
from ..runtime import Gateway
from .app import create_http_app, create_https_app
from .tls import load_pem_bundle, server_context
from .workers import watch_parent

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


async def serve(gw: Gateway, banner: str = "", sockets: tuple[socket.socket, socket.socket] | None = None,
                worker: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``shutdown_timeout`` to finish."""
    gw.cas.require_startable()
    listeners = await start_listeners(gw, sockets)
    gw.start_background()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if worker is not None:
        watch_parent(stop.set)
    if banner:
        emit_banner(banner)
    log.info("%s on %s and %s (event loop: %s)", "gateway listening" if worker is None else f"worker {worker} serving",
             gw.config.https_url, gw.config.http_url, type(loop).__module__.split(".")[0])
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await listeners.stop()
        await gw.close()
