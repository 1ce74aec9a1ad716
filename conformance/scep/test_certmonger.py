"""certmonger against the gateway: its ``scep-submit`` helper directly (GetCACaps,
GetCACert over HTTP and HTTPS), and the certmonger daemon on a private session bus
(enrollment with a challenge, and a request held for approval that certmonger polls
until an operator approves it through the admin API).

certmonger polls a pending SCEP request by resending its PKCSReq; it waits a week
between polls on its own, so the test asks it to poll now with ``getcert refresh``
(what an operator would do), before and after the approval.

Enrollment runs over plain HTTP, as SCEP intends (the envelope protects the request):
certmonger 0.79's scep-submit verifies only its GetCACaps request against ``-R``; the
PKIOperation request that follows uses the system trust store, so over HTTPS it needs
a publicly trusted server certificate. PKIOperation over HTTPS is covered by
``tests/scep/test_https.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.harness import require_client
from protocols.scep.challenge import set_static_challenge
from protocols.scep.ra import issue_ra

from .support import Certmonger, Served, run, served, tool_version

SCEP_SUBMIT_PATHS = ("/usr/libexec/certmonger/scep-submit", "/usr/lib/certmonger/scep-submit")


def scep_submit() -> str:
    require_client("certmonger", "Debian package certmonger")
    for path in SCEP_SUBMIT_PATHS:
        if Path(path).exists():
            return path
    found = shutil.which("scep-submit")
    if found:
        return found
    require_client("scep-submit", "certmonger's SCEP helper (dpkg -L certmonger | grep scep)")
    raise AssertionError("unreachable")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Served]:
    async with served(tmp_path) as s:
        yield s


@pytest.fixture
def certmonger(tmp_path: Path):  # type: ignore[no-untyped-def]
    scep_submit()
    require_client("getcert")
    require_client("dbus-daemon", "Debian package dbus")
    cm = Certmonger(tmp_path / "cm").start()
    try:
        yield cm
    finally:
        cm.stop()


async def test_scep_submit_get_ca_caps_and_certs_over_http_and_https(gateway: Served, tmp_path: Path) -> None:
    helper = scep_submit()
    caps = await run(helper, "-u", gateway.url(), "-c")
    assert caps.returncode == 0, caps.stdout + caps.stderr
    assert {"POSTPKIOperation", "SHA-256", "SHA-512", "AES", "DES3", "SCEPStandard", "Renewal"} <= set(caps.stdout.split())
    https_caps = await run(helper, "-u", gateway.url(https=True), "-R", gateway.info.tls_ca, "-c")
    assert https_caps.returncode == 0 and https_caps.stdout == caps.stdout

    certs = await run(helper, "-u", gateway.url(), "-C")
    assert certs.returncode == 0, certs.stdout + certs.stderr
    parsed = x509.load_pem_x509_certificates(certs.stdout.encode())
    # scep-submit prints the RA first (the leaf that can encrypt), then the root, then the rest
    assert parsed[0] == await gateway.ra_certificate()
    assert parsed[1].subject.rfc4514_string() == "CN=Gateway Dev Root CA"
    assert {c.subject.rfc4514_string() for c in parsed[2:]} == {"CN=Gateway Dev RSA Issuing CA"}
    ndes = await run(helper, "-u", f"{gateway.info.http}/certsrv/mscep/mscep.dll", "-C")
    assert ndes.returncode == 0 and ndes.stdout == certs.stdout


def cert_matches_key(cert_path: Path, key_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        key.public_key().public_bytes(serialization.Encoding.DER, spki)


async def test_certmonger_enrolls_with_a_challenge(gateway: Served, certmonger: Certmonger, tmp_path: Path) -> None:
    added = await certmonger.getcert("add-scep-ca", "-c", "GW", "-u", gateway.url())
    assert added.returncode == 0, added.stdout + added.stderr
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    req = await certmonger.getcert("request", "-c", "GW", "-I", "enroll", "-f", str(cert), "-k", str(key),
                                   "-L", gateway.dev["challenge"], "-N", "CN=certmonger-device", "-w")
    assert req.returncode == 0, req.stdout + req.stderr
    assert await certmonger.wait_status("enroll", {"MONITORING"}) == "MONITORING"
    assert cert_matches_key(cert, key)
    issued = x509.load_pem_x509_certificate(cert.read_bytes())
    assert issued.subject.rfc4514_string() == "CN=certmonger-device"
    rec = await gateway.gw.authority.certificate(format(issued.serial_number, "x"))
    assert rec.protocol_config == "scep"
    ops = gateway.recorder.pki_operations()
    assert ops
    meta = await gateway.run_meta("scep", challenge=gateway.dev["challenge"], client_key=key.read_text(),
                                  client_version=tool_version("dpkg-query", "-W", "-f=${Version}", "certmonger"))
    gateway.recorder.save("certmonger-pkcsreq", ops[-1], "certmonger", {**meta, "expect": "SUCCESS"})


async def test_certmonger_wrong_challenge_is_rejected(gateway: Served, certmonger: Certmonger, tmp_path: Path) -> None:
    await certmonger.getcert("add-scep-ca", "-c", "GW", "-u", gateway.url())
    await certmonger.getcert("request", "-c", "GW", "-I", "bad", "-f", str(tmp_path / "c.pem"),
                             "-k", str(tmp_path / "k.pem"), "-L", "wrong-challenge", "-N", "CN=intruder")
    assert await certmonger.wait_status("bad", {"CA_REJECTED"}) == "CA_REJECTED"
    assert not (tmp_path / "c.pem").exists()


async def test_certmonger_polls_through_a_pending_approval(gateway: Served, certmonger: Certmonger,
                                                           tmp_path: Path) -> None:
    gw = gateway.gw
    svc = gateway.scep
    await gw.authority.create_config("held", "scep", "issuing", ["device"], settings={"approval": "manual"})
    await issue_ra(svc.door, svc.repo, "held", "issuing")
    challenge = await set_static_challenge(svc.repo, "held", "held-challenge-1")
    await certmonger.getcert("add-scep-ca", "-c", "HELD", "-u", gateway.url("held"))
    cert, key = tmp_path / "held.pem", tmp_path / "held-key.pem"
    req = await certmonger.getcert("request", "-c", "HELD", "-I", "held", "-f", str(cert), "-k", str(key),
                                   "-L", challenge, "-N", "CN=held-device")
    assert req.returncode == 0, req.stdout + req.stderr
    assert await certmonger.wait_status("held", {"CA_WORKING"}) == "CA_WORKING"
    pending = await gateway.admin("GET", "/requests?status=pending")
    assert [r["subject"] for r in pending["items"]] == ["CN=held-device"]
    request_id = pending["items"][0]["id"]

    first = len(gateway.recorder.pki_operations())
    await certmonger.getcert("refresh", "-i", "held")  # certmonger polls: still pending
    await _wait_for_poll(gateway, first)
    assert await certmonger.wait_status("held", {"CA_WORKING"}) == "CA_WORKING"
    assert not cert.exists()

    await gateway.admin("POST", f"/requests/{request_id}/approve", {})
    await certmonger.getcert("refresh", "-i", "held")
    assert await certmonger.wait_status("held", {"MONITORING"}) == "MONITORING"
    assert cert_matches_key(cert, key)

    ops = gateway.recorder.pki_operations()
    meta = await gateway.run_meta("held", challenge=challenge, client_key=key.read_text(),
                                  client_version=tool_version("dpkg-query", "-W", "-f=${Version}", "certmonger"))
    gateway.recorder.save("certmonger-pending-1-pkcsreq", ops[0], "certmonger", {**meta, "expect": "PENDING"})
    gateway.recorder.save("certmonger-pending-2-poll", ops[-1], "certmonger",
                          {**meta, "expect": "SUCCESS", "after_approval": True})


async def _wait_for_poll(gateway: Served, seen: int) -> None:
    import asyncio

    for _ in range(200):
        if len(gateway.recorder.pki_operations()) > seen:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("certmonger did not poll")
