"""certbot (PyPI) against the gateway: standalone http-01 on a high port, EAB, --preferred-profile,
ARI-driven renewal, and revocation. Real certbot processes; the gateway's TLS CA is trusted through
REQUESTS_CA_BUNDLE; work, config and log directories live in the test's tmp directory.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from conformance.acme.recorded import RECORD_ENV, Recorder, verify_exchanges
from conformance.acme.support import directory_url, new_config, served
from conformance.harness import GatewayInfo, free_port, require_client
from protocols.acme import eab
from protocols.acme.keyring import Keyring
from protocols.acme.store import AcmeStore


class Certbot:
    """One certbot installation (config/work/logs in ``tmp``) with its standalone http-01 port."""

    def __init__(self, info: GatewayInfo, tmp: Path) -> None:
        self.binary = certbot_binary()
        self.info = info
        self.directory = ""
        self.tmp = tmp
        self.port = free_port()

    def use(self, config_id: str) -> None:
        self.directory = directory_url(self.info, config_id)

    def dirs(self) -> list[str]:
        return ["--config-dir", str(self.tmp / "etc"), "--work-dir", str(self.tmp / "work"),
                "--logs-dir", str(self.tmp / "logs")]

    async def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, *args, "--non-interactive", "--server", self.directory, *self.dirs()]
        env = {**os.environ, "REQUESTS_CA_BUNDLE": self.info.tls_ca}
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 180)
        result = subprocess.CompletedProcess(cmd, proc.returncode or 0, out.decode(), err.decode())
        if check and result.returncode != 0:
            raise AssertionError(f"certbot {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    async def certonly(self, *domains: str, extra: tuple[str, ...] = (), check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["certonly", "--standalone", "--http-01-port", str(self.port), "--http-01-address", "127.0.0.1",
                "--agree-tos", "-m", "ops@example.test", "--no-eff-email", "--key-type", "ecdsa",
                *(a for d in domains for a in ("-d", d)), *extra]
        return await self.run(*args, check=check)

    def cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.tmp / "etc" / "live" / name / "cert.pem").read_bytes())

    def version(self) -> str:
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()


def certbot_binary() -> str:
    """certbot beside this interpreter (a virtualenv's bin/ need not be on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "certbot"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_client("certbot", "pip install certbot")


def _eku(cert: x509.Certificate) -> list[Any]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


async def test_certbot_http01_ari_renewal_and_revocation(tmp_path: Path) -> None:
    async with served(tmp_path) as (gw, info):
        certbot = Certbot(info, tmp_path)
        cid = await new_config(gw, validation_address="127.0.0.1", http01_port=certbot.port, ari_retry_after="PT1S")
        certbot.use(cid)
        routes = {"acme-new-account": "certbot-new-account", "acme-new-order": "certbot-new-order"}
        async with gw.store.read() as q:
            settings = (await q.configs.get(cid)).settings
        meta = {
            "client_version": certbot.version(), "config": cid,
            "settings": settings,
            "command": "certbot certonly --standalone --key-type ecdsa -d www.example.test -d api.example.test",
            # the throwaway data directory's CA passphrase: it keys the nonces, so replays can check them
            "ca_passphrase": gw.config.ca_passphrase().decode(),
        }
        with Recorder("certbot", routes, meta) as recorder:
            await certbot.certonly("www.example.test", "api.example.test")
        learned = verify_exchanges(recorder.exchanges["certbot-new-account"], recorder.exchanges["certbot-new-order"])
        assert learned["contacts"] == ["mailto:ops@example.test"]
        assert {i.value for i in learned["identifiers"]} == {"www.example.test", "api.example.test"}
        if os.environ.get(RECORD_ENV):
            recorder.save()

        first = certbot.cert("www.example.test")
        issuing = await gw.cas.local("issuing")
        first.verify_directly_issued_by(issuing.certificate)
        assert _eku(first) == [ExtendedKeyUsageOID.SERVER_AUTH]
        chain = x509.load_pem_x509_certificates((tmp_path / "etc/live/www.example.test/chain.pem").read_bytes())
        assert chain[0].subject == issuing.certificate.subject

        # ARI: the suggested window lies ahead, so certbot does not renew ...
        not_due = await certbot.run("renew", "--no-random-sleep-on-renew")
        assert "not yet due" in not_due.stdout + not_due.stderr
        # ... until the operator opens the window (say, for a mass re-issuance)
        async with gw.store.read() as q:
            settings = {**(await q.configs.get(cid)).settings, "renewal_window": [0.0, 0.00001]}
        async with gw.store.transaction() as q:
            await q.configs.update(cid, settings=settings)
        # The gateway sees the change on the next request (configuration generation); certbot
        # itself skips ARI until the Retry-After it stored (1 s, ari_retry_after) has passed.
        await asyncio.sleep(1.1)
        await certbot.run("renew", "--no-random-sleep-on-renew")
        second = certbot.cert("www.example.test")
        assert second.serial_number != first.serial_number

        await certbot.run("revoke", "--cert-name", "www.example.test", "--reason", "keycompromise",
                          "--no-delete-after-revoke")
        rec = await gw.authority.certificate(format(second.serial_number, "x"))
        assert rec.status == "revoked" and rec.revocation_reason == 1
        assert (await gw.authority.certificate(format(first.serial_number, "x"))).status == "valid"


async def test_certbot_with_eab_and_preferred_profile(tmp_path: Path) -> None:
    async with served(tmp_path) as (gw, info):
        certbot = Certbot(info, tmp_path)
        cid = await new_config(gw, eab_required=True, validation_address="127.0.0.1", http01_port=certbot.port)
        certbot.use(cid)
        refused = await certbot.certonly("eab.example.test", check=False)
        assert refused.returncode != 0 and "external account binding" in (refused.stdout + refused.stderr).lower()
        key = await eab.create_key(AcmeStore(gw.door("acme").tables), Keyring(gw.door("acme").sealing_passphrase()), cid)
        await certbot.certonly("eab.example.test", extra=(
            "--eab-kid", key.record.kid, "--eab-hmac-key", key.hmac_key, "--preferred-profile", "tls-client"))
        cert = certbot.cert("eab.example.test")
        assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        bound = await AcmeStore(gw.door("acme").tables).get_eab(cid, key.record.kid)
        assert bound is not None and bound.account_id is not None
        rec = await gw.authority.certificate(format(cert.serial_number, "x"))
        async with gw.store.read() as q:
            entity = await q.entities.get(rec.entity_id)
        assert rec.profile == "tls-client" and entity.name == f"acme:{bound.account_id}"


@pytest.fixture(autouse=True)
def _certbot_present() -> None:
    certbot_binary()
