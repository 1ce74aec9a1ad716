"""Run a benchmark leg inside a private network namespace that has only loopback.

``unshare -n`` (util-linux) makes the namespace and ``ip link set lo up`` (iproute2)
brings up its loopback; as non-root, ``unshare -r -n`` maps the user to root inside a
user namespace first. Whatever runs inside cannot reach or listen on the machine's
real interfaces, which is the only safe way to run servers that bind 0.0.0.0.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class NamespaceUnavailable(Exception):
    """This machine does not let us make a private network namespace."""


def command(argv: list[str]) -> list[str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise NamespaceUnavailable("needs unshare (util-linux) and ip (iproute2)")
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    return ["unshare", *flags, "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def probe() -> None:
    """Raise NamespaceUnavailable unless a loopback-only namespace can be made here."""
    try:
        out = subprocess.run(
            command([sys.executable, "-c", "import socket; print(','.join(n for _, n in socket.if_nameindex()))"]),
            capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceUnavailable(str(exc)) from None
    if out.returncode != 0 or out.stdout.strip() != "lo":
        raise NamespaceUnavailable((out.stderr or out.stdout).strip()[:300] or "unshare failed")


def run_module(module: str, args: list[str], timeout: float) -> int:
    """``python -m module args`` inside a fresh namespace (stderr passes through for
    progress); returns its exit status. On timeout the session it was started in (its
    servers included) gets SIGTERM, then SIGKILL."""
    proc = subprocess.Popen(command([sys.executable, "-m", module, *args]), cwd=ROOT, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
