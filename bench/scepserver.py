"""micromdm's scepserver (Debian ``scep``) as the SCEP peer.

It has no listen-address option and binds every interface, so it is only ever started
inside the private network namespace the SCEP leg runs in (see :mod:`bench.netns`);
:meth:`ScepServer.start` refuses to run anywhere that has an interface besides ``lo``.
Its CA is made once per leg with the key size the gateway's SCEP CA uses, and every
run starts from a fresh copy of that depot (serial file, index) and a fresh process.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from .procs import free_port, stop, wait_for_port


def binary() -> str | None:
    return shutil.which("scepserver")


def version() -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "scep"], capture_output=True, text=True,
                             check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def only_loopback() -> bool:
    """True when this network namespace has no interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class ScepServer:
    """One scepserver process on a fresh copy of the leg's CA depot."""

    def __init__(self, workdir: Path, challenge: str, key_size: int = 2048) -> None:
        self.workdir = workdir
        self.challenge = challenge
        self.key_size = key_size
        self.template = workdir / "depot-template"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.runs = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def init_ca(self) -> None:
        exe = binary()
        if exe is None:
            raise RuntimeError("scepserver is not installed (Debian package 'scep')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.template / "ca.pem").exists():
            subprocess.run([exe, "ca", "-init", "-depot", str(self.template), "-keySize", str(self.key_size),
                            "-organization", "bench", "-years", "1"],
                           check=True, capture_output=True, timeout=300, cwd=self.workdir)

    def start(self) -> str:
        """Start on a fresh depot; returns the SCEP URL."""
        if not only_loopback():
            raise RuntimeError("refusing to start scepserver outside a loopback-only network namespace")
        self.init_ca()
        self.runs += 1
        depot = self.workdir / f"depot-{self.runs}"
        shutil.copytree(self.template, depot)
        self.port = free_port()
        log = open(self.workdir / f"scepserver-{self.runs}.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary()), "-depot", str(depot), "-port", str(self.port), "-challenge", self.challenge,
             "-allowrenew", "0"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        log.close()
        wait_for_port(self.port, self.proc)
        return f"http://127.0.0.1:{self.port}/scep"

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None
