"""Several serving processes on one pair of listening sockets (``[server] workers``).

One Python process computes on one core. With ``workers > 1`` the ``gateway serve``
process binds the HTTPS and HTTP sockets itself, starts that many worker processes
that inherit them (the kernel hands each new connection to one process accepting on
the socket), forwards SIGINT/SIGTERM to them, and stops them all when one exits, so a
supervisor (systemd, a container runtime) sees one service that is up or down.

Workers are replicas of each other on one machine: they share the store as replicas
on several machines would (``Config.store_has_replicas``), so ACME nonces are recorded
in the database and any worker accepts a nonce another one issued. Background work
(scheduled CRLs, the ACME janitor) runs in every worker, as it does on every replica.
Each worker answers ``/metrics`` with its own counters, and the kernel picks which
worker a scrape reaches: to scrape every process, run single-worker gateways as
replicas on ports of their own instead. Gauges read from the store (CRL age) agree.

Inherited sockets (not SO_REUSEPORT) so that no other process of the same user can bind
the port alongside the gateway and take a share of its connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from ..config import Config
from ..logs import emit_banner

log = logging.getLogger(__name__)

WORKER_ENV = "GATEWAY_WORKER"  # "<index>:<https fd>,<http fd>", set only in worker processes
MAX_WORKERS = 64


def worker_index() -> int | None:
    """This worker's number (0 ..), or None in a single-process gateway."""
    value = os.environ.get(WORKER_ENV)
    return int(value.partition(":")[0]) if value else None


def worker_sockets() -> tuple[int, socket.socket, socket.socket] | None:
    """In a worker: its index and the inherited HTTPS and HTTP sockets; None otherwise."""
    value = os.environ.get(WORKER_ENV)
    if not value:
        return None
    index, _, fds = value.partition(":")
    https_fd, http_fd = (int(fd) for fd in fds.split(","))
    return int(index), socket.socket(fileno=https_fd), socket.socket(fileno=http_fd)


def _bind(cfg: Config) -> list[socket.socket]:
    sockets = []
    for port in (cfg.server.https_port, cfg.server.http_port):
        family = socket.AF_INET6 if ":" in cfg.server.host else socket.AF_INET
        sock = socket.create_server((cfg.server.host, port), family=family, backlog=1024)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


async def run_workers(cfg: Config, argv: Sequence[str], banner: str = "") -> int:
    """Bind, start ``cfg.server.workers`` copies of ``gateway serve argv``, supervise them.

    Returns 0 after a signal stopped them all, else the exit code of the worker that
    ended first (1 if it ended cleanly: a worker never should on its own).
    """
    sockets = _bind(cfg)
    fds = ",".join(str(s.fileno()) for s in sockets)
    procs: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for index in range(cfg.server.workers):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "serve", *argv,
                env={**os.environ, WORKER_ENV: f"{index}:{fds}"}, pass_fds=[s.fileno() for s in sockets],
            ))
        if banner:
            emit_banner(banner)
        log.info("gateway listening on %s and %s with %d worker processes (pids %s)", cfg.https_url,
                 cfg.http_url, len(procs), ", ".join(str(p.pid) for p in procs))
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if stopping not in done:
            ended = next(p for p, w in zip(procs, waits) if w in done)
            code = ended.returncode or 1
            log.error("worker %d exited with %s; stopping the others", ended.pid, ended.returncode)
        stopping.cancel()
        await _stop_all(procs, cfg.server.shutdown_timeout + 5)
        return code
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for sock in sockets:
            sock.close()


async def _stop_all(procs: list[asyncio.subprocess.Process], timeout: float) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout)
    except asyncio.TimeoutError:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*(p.wait() for p in procs))
