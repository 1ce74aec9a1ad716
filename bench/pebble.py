"""Pebble (Debian ``pebble``) as the ACME peer: own config on 127.0.0.1, fresh process per run.

Pebble 2.4 keeps everything in memory and scans it linearly, and can deadlock under
concurrent load (a lock-order inversion in its store): a fresh process per run keeps
runs comparable, and the run loop's watchdog ends a run that stops completing.
The environment makes it an equal opponent: every challenge valid without looking
(PEBBLE_VA_ALWAYS_VALID), no artificial validation sleep (PEBBLE_VA_NOSLEEP) and no
deliberately rejected nonces (PEBBLE_WFE_NONCEREJECT=0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .procs import free_port, stop, wait_for_port
from .tlsutil import write_localhost_certificate

ENV = {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


def binary() -> str | None:
    return shutil.which("pebble")


def version() -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pebble"], capture_output=True,
                             text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


class Pebble:
    """One Pebble process; ``start`` returns the directory URL."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cert = workdir / "pebble-cert.pem"
        self.key = workdir / "pebble-key.pem"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> str:
        exe = binary()
        if exe is None:
            raise RuntimeError("pebble is not installed (Debian package 'pebble')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.cert.exists():
            write_localhost_certificate(self.cert, self.key)
        self.port = free_port()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": str(self.cert),
            "privateKey": str(self.key),
            "httpPort": free_port(),  # validation ports: unused with PEBBLE_VA_ALWAYS_VALID
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        path = self.workdir / "pebble-config.json"
        path.write_text(json.dumps(config, indent=2))
        log = open(self.workdir / "pebble.log", "wb")
        # -dnsserver: never ask the machine's resolver (always-valid needs no lookups anyway)
        self.proc = subprocess.Popen(
            [exe, "-config", str(path), "-dnsserver", f"127.0.0.1:{free_port()}"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENV}, cwd=self.workdir,
        )
        log.close()
        wait_for_port(self.port, self.proc)
        return f"https://127.0.0.1:{self.port}/dir"

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None
