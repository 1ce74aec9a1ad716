"""Pebble (Debian ``pebble``) with real validation, as an ACME upstream: its names resolve
through ``pebble-challtestsrv`` (every name to 127.0.0.1, TXT records set over its
management API) and its http-01 requests go to the gateway's plain-HTTP listener."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.tlsutil import write_localhost_certificate
from conformance.harness import free_port, require_client


@dataclass
class Pebble:
    workdir: Path
    http_port: int  # where Pebble sends http-01 validations: the gateway's HTTP listener
    port: int = field(default_factory=free_port)
    management: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    dns_management: int = field(default_factory=free_port)
    eab_keys: dict[str, str] = field(default_factory=dict)
    """External account binding keys (kid -> base64url HMAC key): when given, Pebble requires EAB."""
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def tls_ca(self) -> Path:
        return self.workdir / "pebble-cert.pem"

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls_ca))

    def start(self) -> "Pebble":
        pebble = require_client("pebble", "Debian package pebble")
        challtestsrv = require_client("pebble-challtestsrv", "Debian package pebble")
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_localhost_certificate(self.tls_ca, self.workdir / "pebble-key.pem")
        self._spawn("challtestsrv", [challtestsrv, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                                     "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
                                     "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_management}"], {})
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(self.tls_ca), "privateKey": str(self.workdir / "pebble-key.pem"),
            "httpPort": self.http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(self.eab_keys), "externalAccountMACKeys": self.eab_keys}}
        (self.workdir / "pebble.json").write_text(json.dumps(config))
        self._spawn("pebble", [pebble, "-config", str(self.workdir / "pebble.json"),
                               "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                    {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_VA_ALWAYS_VALID": "0",
                     "PEBBLE_AUTHZREUSE": "0"})
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get(self.directory)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Pebble did not start: " + (self.workdir / "pebble.log").read_text())
                time.sleep(0.2)
        return self

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")
        self._procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                            cwd=self.workdir))
        log.close()

    def get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._context(), timeout=10) as resp:
            return bytes(resp.read())

    def chain_pem(self) -> bytes:
        """The issuing intermediate, then the root (Pebble makes new ones at every start)."""
        base = f"https://127.0.0.1:{self.management}"
        return self.get(f"{base}/intermediates/0") + self.get(f"{base}/roots/0")

    def cert_status(self, serial: int) -> dict[str, object]:
        out = json.loads(self.get(f"https://127.0.0.1:{self.management}/cert-status-by-serial/{serial:x}"))
        assert isinstance(out, dict)
        return out

    def set_txt(self, host: str, value: str) -> None:
        body = json.dumps({"host": host, "value": value}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.dns_management}/set-txt", data=body, method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
