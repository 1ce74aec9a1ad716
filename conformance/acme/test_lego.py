"""lego (Debian package) against the gateway: http-01, tls-alpn-01, dns-01 through a real DNS server
on loopback (pebble-challtestsrv, driven by lego's exec provider), renewal, revocation and EAB.

The gateway resolves identifiers through challtestsrv (``dns_resolver``), whose
default A record is 127.0.0.1, exactly as Pebble does; lego trusts the gateway's
TLS CA through LEGO_CA_CERTIFICATES.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509

from conformance.acme.support import directory_url, new_config, served
from conformance.harness import GatewayInfo, free_port, require_client
from protocols.acme import eab
from protocols.acme.keyring import Keyring
from protocols.acme.store import AcmeStore

HOOK = Path(__file__).with_name("dns_hook.py")


class Challtestsrv:
    """pebble-challtestsrv on 127.0.0.1: DNS (A -> 127.0.0.1, TXT via its management API)."""

    def __init__(self) -> None:
        self.binary = require_client("pebble-challtestsrv", "apt-get install pebble")
        self.dns_port = free_port()
        self.management_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def management(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-dns01", f"127.0.0.1:{self.dns_port}", "-management", f"127.0.0.1:{self.management_port}",
             "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(self.management + "/clear-txt", data=b'{"host":"probe."}', method="POST")
                with urllib.request.urlopen(req, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pebble-challtestsrv did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def challtestsrv() -> Iterator[Challtestsrv]:
    require_client("lego", "apt-get install lego")
    server = Challtestsrv()
    server.start()
    yield server
    server.stop()


class Lego:
    def __init__(self, info: GatewayInfo, tmp: Path) -> None:
        self.binary = require_client("lego", "apt-get install lego")
        self.info = info
        self.path = tmp / "lego"
        self.tmp = tmp
        self.directory = ""

    def use(self, config_id: str) -> None:
        self.directory = directory_url(self.info, config_id)

    async def run(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--server", self.directory, "--accept-tos", "--email", "ops@example.test",
               "--path", str(self.path), "--key-type", "ec256", *args]
        full_env = {**os.environ, "LEGO_CA_CERTIFICATES": self.info.tls_ca, **(env or {})}
        proc = await asyncio.create_subprocess_exec(*cmd, env=full_env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
        result = subprocess.CompletedProcess(cmd, proc.returncode or 0, out.decode(), "")
        if check and result.returncode != 0:
            raise AssertionError(f"lego {' '.join(args)} failed:\n{result.stdout}")
        return result

    def cert(self, domain: str) -> x509.Certificate:
        name = domain.replace("*", "_")
        return x509.load_pem_x509_certificates((self.path / "certificates" / f"{name}.crt").read_bytes())[0]

    def hook(self) -> Path:
        script = self.tmp / "dns-hook.sh"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HOOK}" "$@"\n')
        script.chmod(0o755)
        return script


async def _issuing(gw: object) -> x509.Certificate:
    return (await gw.cas.local("issuing")).certificate  # type: ignore[attr-defined]


async def test_lego_http01_renew_and_revoke(tmp_path: Path, challtestsrv: Challtestsrv) -> None:
    async with served(tmp_path) as (gw, info):
        lego = Lego(info, tmp_path)
        port = free_port()
        lego.use(await new_config(gw, http01_port=port, dns_resolver=f"127.0.0.1:{challtestsrv.dns_port}"))
        http = ("--http", "--http.port", f"127.0.0.1:{port}")
        await lego.run("--domains", "h.example.test", "--domains", "h2.example.test", *http, "run")
        first = lego.cert("h.example.test")
        first.verify_directly_issued_by(await _issuing(gw))
        sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == ["h.example.test", "h2.example.test"]
        await lego.run("--domains", "h.example.test", "--domains", "h2.example.test", *http, "renew", "--days", "400", "--no-random-sleep")
        second = lego.cert("h.example.test")
        assert second.serial_number != first.serial_number
        await lego.run("--domains", "h.example.test", "revoke", "--reason", "4")
        rec = await gw.authority.certificate(format(second.serial_number, "x"))
        assert rec.status == "revoked" and rec.revocation_reason == 4


async def test_lego_tls_alpn01(tmp_path: Path, challtestsrv: Challtestsrv) -> None:
    async with served(tmp_path) as (gw, info):
        lego = Lego(info, tmp_path)
        port = free_port()
        lego.use(await new_config(gw, tlsalpn01_port=port, challenge_types=["tls-alpn-01"],
                                  dns_resolver=f"127.0.0.1:{challtestsrv.dns_port}"))
        await lego.run("--domains", "t.example.test", "--tls", "--tls.port", f"127.0.0.1:{port}", "run")
        lego.cert("t.example.test").verify_directly_issued_by(await _issuing(gw))


async def test_lego_dns01_wildcard_through_a_real_dns_server(tmp_path: Path, challtestsrv: Challtestsrv) -> None:
    async with served(tmp_path) as (gw, info):
        lego = Lego(info, tmp_path)
        lego.use(await new_config(gw, dns_resolver=f"127.0.0.1:{challtestsrv.dns_port}"))
        env = {"EXEC_PATH": str(lego.hook()), "CHALLTESTSRV_URL": challtestsrv.management,
               "EXEC_POLLING_INTERVAL": "1", "EXEC_PROPAGATION_TIMEOUT": "30",
               "EXEC_SEQUENCE_INTERVAL": "1"}
        await lego.run("--domains", "*.d.example.test", "--domains", "d.example.test", "--dns", "exec",
                       "--dns.resolvers", f"127.0.0.1:{challtestsrv.dns_port}", "--dns.disable-cp", "run", env=env)
        cert = lego.cert("*.d.example.test")
        cert.verify_directly_issued_by(await _issuing(gw))
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == ["*.d.example.test", "d.example.test"]


async def test_lego_with_eab(tmp_path: Path, challtestsrv: Challtestsrv) -> None:
    async with served(tmp_path) as (gw, info):
        lego = Lego(info, tmp_path)
        port = free_port()
        cid = await new_config(gw, eab_required=True, http01_port=port,
                               dns_resolver=f"127.0.0.1:{challtestsrv.dns_port}")
        lego.use(cid)
        http = ("--http", "--http.port", f"127.0.0.1:{port}")
        refused = await lego.run("--domains", "e.example.test", *http, "run", check=False)
        assert refused.returncode != 0 and "requires External Account Binding" in refused.stdout
        key = await eab.create_key(AcmeStore(gw.door("acme").tables), Keyring(gw.door("acme").sealing_passphrase()), cid,
                                   identifiers=["*.example.test"])
        await lego.run("--domains", "e.example.test", "--eab", "--kid", key.record.kid, "--hmac", key.hmac_key,
                       *http, "run")
        lego.cert("e.example.test").verify_directly_issued_by(await _issuing(gw))
        bound = await AcmeStore(gw.door("acme").tables).get_eab(cid, key.record.kid)
        assert bound is not None and bound.account_id is not None
