"""Several gateway replicas on one PostgreSQL database behind haproxy, all on loopback.

The deployment README "Several replicas" describes, built for a test: one data directory
initialized on the database, copied for each replica (the same config.toml, CA
passphrase and TLS key: "separate hosts in spirit"), each replica its own ``gateway
serve`` process on ports of its own, and haproxy (Debian's) in front, in TCP mode on
both listeners (the answers clients see are the gateways' own, never a proxy's 502),
health-checking ``/healthz`` on each replica's HTTP port. The public URLs in
config.toml are haproxy's, so certificates and ACME URLs point at the load balancer.

Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import stop as stop_process
from conformance.harness import GatewayInfo, GatewayProcess, free_port, require_client
from gateway import bootstrap
from gateway.config import load_config

HAPROXY_CONFIG = """\
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    option redispatch
frontend https
    bind 127.0.0.1:{https_port}
    default_backend gateways_https
frontend http
    bind 127.0.0.1:{http_port}
    default_backend gateways_http
backend gateways_https
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
{https_servers}
backend gateways_http
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
{http_servers}
"""


class Haproxy:
    """haproxy in the foreground (``-db``) with a generated configuration."""

    def __init__(self, work: Path, replicas: list[GatewayProcess]) -> None:
        self.binary = require_client("haproxy", "Debian package haproxy")
        self.work = work
        self.https_port, self.http_port = free_port(), free_port()
        self.replicas = replicas
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work / "haproxy.log"

    def config(self) -> str:
        check = "check port {http} inter 300 fall 1 rise 2"
        https = "\n".join(f"    server r{i} 127.0.0.1:{r.https_port} " + check.format(http=r.http_port)
                          for i, r in enumerate(self.replicas))
        http = "\n".join(f"    server r{i} 127.0.0.1:{r.http_port} " + check.format(http=r.http_port)
                         for i, r in enumerate(self.replicas))
        return HAPROXY_CONFIG.format(https_port=self.https_port, http_port=self.http_port,
                                     https_servers=https, http_servers=http)

    def start(self) -> None:
        path = self.work / "haproxy.cfg"
        path.write_text(self.config())
        checked = subprocess.run([self.binary, "-c", "-f", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([self.binary, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@dataclass
class Cluster:
    """``size`` replicas on ``store_url`` behind haproxy (``size`` 1: one process, no proxy
    unless ``balanced``; ``store_url`` None: SQLite in the data directory)."""

    work: Path
    store_url: str | None
    size: int = 3
    replicas: list[GatewayProcess] = field(default_factory=list)
    proxy: Haproxy | None = None
    info: GatewayInfo | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of every replica."""
    balanced: bool | None = None
    """haproxy in front (None: when there is more than one replica)."""
    ca: dict[str, Any] = field(default_factory=dict)
    """``[ca]`` settings written to config.toml before it is copied (e.g. short job intervals)."""

    async def start(self) -> GatewayInfo:
        self.replicas = [GatewayProcess(self.work / f"replica{i}" / "data", env=self.env) for i in range(self.size)]
        if self.balanced if self.balanced is not None else self.size > 1:
            self.proxy = Haproxy(self.work, self.replicas)
            public = {"public_https_port": self.proxy.https_port, "public_http_port": self.proxy.http_port}
        else:
            public = {}
        first = self.replicas[0]
        (first.data_dir.parent).mkdir(parents=True)
        await bootstrap.initialize(first.data_dir, store_url=self.store_url,
                                   server={"host": "127.0.0.1", "https_port": first.https_port,
                                           "http_port": first.http_port, **public})
        if self.ca:
            config = load_config(first.data_dir)
            for key, value in self.ca.items():
                setattr(config.ca, key, value)
            config.save()
        for replica in self.replicas[1:]:
            replica.data_dir.parent.mkdir(parents=True)
            shutil.copytree(first.data_dir, replica.data_dir)
        return self.info_now()

    def info_now(self) -> GatewayInfo:
        if self.info is None:
            self.info = self.replicas[0].info()
        return self.info

    def serve(self) -> None:
        for replica in self.replicas:
            replica.start()
        if self.proxy is not None:
            self.proxy.start()
            self.wait_balanced()

    def wait_balanced(self, timeout: float = 30.0) -> None:
        """Until haproxy routes to a healthy replica (its checks have passed)."""
        assert self.proxy is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.proxy.http_port}/healthz"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("haproxy never routed /healthz to a replica")

    def kill(self, index: int) -> int:
        """kill -9 one replica (its pid); returns the pid."""
        proc = self.replicas[index].proc
        assert proc is not None
        pid = proc.pid
        proc.kill()
        proc.wait()
        self.replicas[index].proc = None
        return pid

    async def restart(self, index: int) -> None:
        """Start a killed replica again (off the event loop: start() waits for /healthz)."""
        await asyncio.to_thread(self.replicas[index].start)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for replica in self.replicas:
            replica.stop()

    def logs(self) -> str:
        return "\n".join(r.log_path.read_text() for r in self.replicas if r.log_path.exists())

