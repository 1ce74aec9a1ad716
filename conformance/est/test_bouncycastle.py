"""Bouncy Castle's EST client (org.bouncycastle.est, Debian libbcpkix-java) against the gateway.

conformance/est/EstClient.java is compiled with javac at test time against the
system jars and run once per operation; its exchanges are recorded (with
GATEWAY_RECORD_FIXTURES=1) into fixtures/est/bouncycastle-*.json.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from conformance.harness import in_ci, require_client
from gateway.ca.backend import RevocationReason
from tests.est.helpers import EstServer, core, device_certificate, manufacturer_ca, trust_at_listener

from .recorder import Recorder
from .support import credential_meta, label_meta

HERE = Path(__file__).parent
JARS = [Path("/usr/share/java") / name for name in ("bcpkix.jar", "bcprov.jar", "bcutil.jar")]


def _bc_version() -> str:
    with zipfile.ZipFile(JARS[0]) as jar:
        manifest = jar.read("META-INF/MANIFEST.MF").decode(errors="replace")
    version = next((line.split(":", 1)[1].strip() for line in manifest.splitlines()
                    if line.startswith(("Bundle-Version", "Implementation-Version"))), "unknown")
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return f"bcpkix {version}; {java}"


@pytest.fixture(scope="session")
def bc_classpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_client("java", "Debian package openjdk-17-jdk-headless")
    require_client("javac", "Debian package openjdk-17-jdk-headless")
    missing = [str(j) for j in JARS if not j.exists()]
    if missing:
        message = f"Bouncy Castle jars missing: {missing} (Debian libbcpkix-java libbcprov-java libbcutil-java)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    build = tmp_path_factory.mktemp("bc-build")
    cp = ":".join(str(j) for j in JARS)
    subprocess.run(["javac", "-nowarn", "-cp", cp, "-d", str(build), str(HERE / "EstClient.java")],
                   check=True, capture_output=True, timeout=300)
    return f"{build}:{cp}"


@pytest.fixture(scope="session")
def bc_version(bc_classpath: str) -> str:
    return _bc_version()


@pytest.fixture
def recorder(bc_version: str) -> Recorder:
    return Recorder("bouncycastle", bc_version)


async def bc(classpath: str, est: EstServer, operation: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run one EstClient operation; the server keeps running on this event loop meanwhile."""
    server = est.info.https.removeprefix("https://")
    proc = await asyncio.create_subprocess_exec(
        "java", "-cp", classpath, "EstClient", server, operation, "--trust", est.info.tls_ca, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"EstClient printed no result (exit {proc.returncode}):\n{err.decode()}"
    return proc.returncode or 0, json.loads(lines[-1])


async def dev_meta(est: EstServer) -> dict:
    return await label_meta(est, "est", {est.dev["username"]: est.dev["password"]})


def basic(est: EstServer) -> list[str]:
    return ["--user", est.dev["username"], "--password", est.dev["password"]]


async def test_cacerts_and_csrattrs(est: EstServer, bc_classpath: str, recorder: Recorder, tmp_path: Path) -> None:
    with recorder.scenario("cacerts", **await dev_meta(est)):
        code, out = await bc(bc_classpath, est, "cacerts", "--label", "est", "--out", str(tmp_path))
    assert code == 0 and out["trusted"] is True
    assert set(out["certificates"]) == {"CN=Gateway Dev Root CA", "CN=Gateway Dev Issuing CA"}
    with recorder.scenario("csrattrs", **await dev_meta(est)):
        code, out = await bc(bc_classpath, est, "csrattrs", "--label", "est")
    assert code == 0 and out["present"] is True
    assert set(out["requirements"]) == {"1.2.840.10045.4.3.2", "1.2.840.10045.2.1", "1.2.840.113549.1.9.16.2.61"}


async def test_enroll_basic_reenroll_and_serverkeygen_with_the_certificate(est: EstServer, bc_classpath: str,
                                                                           recorder: Recorder, tmp_path: Path) -> None:
    with recorder.scenario("simpleenroll-basic", **await dev_meta(est)):
        code, out = await bc(bc_classpath, est, "enroll", "--label", "est", *basic(est), "--cn", "bc-device",
                             "--dns", "bc-device.example", "--out", str(tmp_path))
    assert code == 0 and out["completed"] and out["certificates"] == ["CN=bc-device"], out
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    from cryptography.hazmat.primitives import serialization

    from tests.est.helpers import ClientCredential

    key = serialization.load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    cred = ClientCredential(cert, key, tmp_path / "cert.pem", tmp_path / "key.pem")
    meta = {**await dev_meta(est), **credential_meta(cred, "issued")}
    with recorder.scenario("simplereenroll-cert", **meta):
        code, out = await bc(bc_classpath, est, "reenroll", "--label", "est", "--cert", str(cred.cert_path),
                             "--key", str(cred.key_path), "--cn", "bc-device", "--dns", "bc-device.example")
    assert code == 0 and out["certificates"] == ["CN=bc-device"] and out["serial"] != format(cert.serial_number, "x")
    with recorder.scenario("serverkeygen-cert", **meta):
        code, out = await bc(bc_classpath, est, "serverkeygen", "--label", "est", "--cert", str(cred.cert_path),
                             "--key", str(cred.key_path), "--cn", "bc-keygen", "--curve", "P-384")
    assert code == 0 and out["server_key"] and out["key_matches_certificate"], out
    renewals = await est.events(type="renew", protocol_config="est")
    assert [e.status for e in renewals] == ["success"]


async def test_serverkeygen_with_basic(est: EstServer, bc_classpath: str, recorder: Recorder) -> None:
    with recorder.scenario("serverkeygen-basic", **await dev_meta(est)):
        code, out = await bc(bc_classpath, est, "serverkeygen", "--label", "est", *basic(est), "--cn", "bc-kg")
    assert code == 0 and out["key_matches_certificate"] and out["certificates"] == ["CN=bc-kg"], out


@pytest.fixture
def manufacturer(tmp_path: Path, prepare: list) -> tuple:
    ca, key, path = manufacturer_ca(tmp_path)
    prepare.append(lambda data_dir: trust_at_listener(data_dir, path))
    return ca, key, path


async def test_idevid_enrolls_on_a_certificate_label(manufacturer: tuple, est: EstServer, bc_classpath: str,
                                                     recorder: Recorder, tmp_path: Path) -> None:
    ca, ca_key, ca_path = manufacturer
    await est.label("factory", auth="certificate", client_trust_anchors=[ca_path.read_text()])
    idevid = device_certificate(ca, ca_key, "SN-0042", tmp_path)
    meta = {**await label_meta(est, "factory", {}), **credential_meta(idevid, "anchored", ca_path.read_text())}
    with recorder.scenario("simpleenroll-idevid", **meta):
        code, out = await bc(bc_classpath, est, "enroll", "--label", "factory", "--cert", str(idevid.cert_path),
                             "--key", str(idevid.key_path), "--cn", "sn-0042")
    assert code == 0 and out["certificates"] == ["CN=sn-0042"], out


async def test_pending_request_is_retried_after_retry_after(est: EstServer, bc_classpath: str,
                                                            recorder: Recorder) -> None:
    await est.label("held", users={"tech": "s3cret"}, approval="manual", retry_after=1)

    async def approve_when_held() -> None:
        for _ in range(600):
            pending = await core(est.gw).requests(status="pending")
            if pending:
                await est.gw.authority.approve(pending[0].id, "operator")
                return
            await asyncio.sleep(0.05)

    meta = await label_meta(est, "held", {"tech": "s3cret"})
    with recorder.scenario("simpleenroll-pending", **meta, operator_approves_before_step=2):
        approver = asyncio.create_task(approve_when_held())
        code, out = await bc(bc_classpath, est, "enroll", "--label", "held", "--user", "tech", "--password", "s3cret",
                             "--cn", "bc-held", "--retries", "20")
        await approver
    assert code == 0 and out["pending"] is True and out["completed"] is True, out
    assert out["retries_used"] >= 1 and out["certificates"] == ["CN=bc-held"]


async def test_refusals(est: EstServer, bc_classpath: str, recorder: Recorder, tmp_path: Path) -> None:
    with recorder.scenario("refused-wrong-password", **await dev_meta(est)):
        code, out = await bc(bc_classpath, est, "enroll", "--label", "est", "--user", "est", "--password", "nope",
                             "--cn", "bc-intruder")
    assert code == 2 and out["http_status"] == 401
    device = await est.client_cert("bc-neg", ["bc-neg.example"])
    meta = {**await dev_meta(est), **credential_meta(device, "issued")}
    with recorder.scenario("refused-reenroll-other-subject", **meta):
        code, out = await bc(bc_classpath, est, "reenroll", "--label", "est", "--cert", str(device.cert_path),
                             "--key", str(device.key_path), "--cn", "someone-else")
    assert code == 2 and out["http_status"] == 403
    await est.gw.authority.revoke(format(device.certificate.serial_number, "x"), RevocationReason.key_compromise,
                                  actor="test")
    with recorder.scenario("refused-reenroll-revoked", **meta, revoked=True):
        code, out = await bc(bc_classpath, est, "reenroll", "--label", "est", "--cert", str(device.cert_path),
                             "--key", str(device.key_path), "--cn", "bc-neg", "--dns", "bc-neg.example")
    assert code == 2 and out["http_status"] == 403
    assert await est.issued() == 0
