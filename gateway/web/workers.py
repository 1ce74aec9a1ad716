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
Workers keep their counters in a directory of this process's (prometheus_client's
multiprocess mode), ``run/metrics-<pid>`` in the data directory, so ``/metrics`` on any
worker sums every worker's; the families read from the store (CRL age, certificates
issued outside configurations) are read once. A ``serve`` killed with SIGKILL cannot
remove its directory: the next one removes every directory whose process is gone.

Workers stop when the parent dies, however it dies (:func:`watch_parent`).

Inherited sockets (not SO_REUSEPORT) so that no other process of the same user can bind
the port alongside the gateway and take a share of its connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import shutil
import socket
import sys
from pathlib import Path
from collections.abc import Callable, Sequence

from ..config import Config
from ..logs import emit_banner
from ..metrics import MULTIPROCESS_ENV

log = logging.getLogger(__name__)

WORKER_ENV = "GATEWAY_WORKER"  # "<index>:<https fd>,<http fd>,<parent pipe fd>", set only in worker processes
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
    https_fd, http_fd = (int(fd) for fd in fds.split(",")[:2])
    return int(index), socket.socket(fileno=https_fd), socket.socket(fileno=http_fd)


def _parent_pipe() -> int | None:
    value = os.environ.get(WORKER_ENV, "")
    fds = value.partition(":")[2].split(",")
    return int(fds[2]) if len(fds) > 2 else None


def set_parent_death_signal() -> None:
    """Linux: the kernel sends this process SIGTERM when its parent dies (prctl
    PR_SET_PDEATHSIG); elsewhere the pipe below does it alone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl here: the pipe still watches
        pass


def watch_parent(stop: Callable[[], None]) -> None:
    """In a worker: call ``stop`` (a graceful shutdown) when the ``gateway serve`` parent dies.

    A worker must not outlive its parent: orphaned workers would go on serving on the
    inherited sockets, and a restarted gateway could not bind its ports. Two watches, as
    either alone can miss: the parent death signal, and end-of-file on a pipe whose only
    write end the parent holds (closed by the kernel however the parent dies, kill -9 too).
    """
    fd = _parent_pipe()
    if fd is None:
        return
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # the parent never writes; ignore anything that is not end-of-file
        loop.remove_reader(fd)
        log.error("the gateway serve process (parent) is gone; this worker stops")
        stop()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    readable()  # the parent may already be gone (before the reader was added)


def bind_listeners(cfg: Config) -> list[socket.socket]:
    sockets = []
    for port in (cfg.server.https_port, cfg.server.http_port):
        family = socket.AF_INET6 if ":" in cfg.server.host else socket.AF_INET
        sock = socket.create_server((cfg.server.host, port), family=family, backlog=1024)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _metrics_dir(run: Path) -> str:
    """A fresh counters directory for this ``serve`` (``metrics-<pid>``), after removing
    those of ``serve`` processes that died without removing theirs (kill -9): left in
    place they would grow, and a reused pid would sum a dead run's counters."""
    run.mkdir(parents=True, exist_ok=True)
    for stale in run.glob("metrics-*"):
        pid = stale.name.removeprefix("metrics-")
        if not pid.isdigit() or int(pid) == os.getpid() or not _process_alive(int(pid)):
            log.info("removing the metrics directory %s of a gateway serve that is gone", stale)
            shutil.rmtree(stale, ignore_errors=True)
    mine = run / f"metrics-{os.getpid()}"
    mine.mkdir(mode=0o700)
    return str(mine)


async def run_workers(cfg: Config, argv: Sequence[str], banner: str = "") -> int:
    """Bind, start ``cfg.worker_count`` copies of ``gateway serve argv``, supervise them.

    Returns 0 after a signal stopped them all, else the exit code of the worker that
    ended first (1 if it ended cleanly: a worker never should on its own).
    """
    sockets = bind_listeners(cfg)
    # The pipe's write end stays here, never written: the workers see end-of-file on
    # theirs when this process dies (watch_parent).
    parent_read, parent_write = os.pipe()
    metrics_dir = _metrics_dir(cfg.data_dir / "run")
    fds = ",".join(str(fd) for fd in (*(s.fileno() for s in sockets), parent_read))
    procs: list[asyncio.subprocess.Process] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for index in range(cfg.worker_count):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "serve", *argv,
                env={**os.environ, WORKER_ENV: f"{index}:{fds}", MULTIPROCESS_ENV: metrics_dir},
                pass_fds=[*(s.fileno() for s in sockets), parent_read],
            ))
        os.close(parent_read)  # only the workers hold it open now
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
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for fd in (parent_read, parent_write):
            try:
                os.close(fd)
            except OSError:  # already closed
                pass


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
