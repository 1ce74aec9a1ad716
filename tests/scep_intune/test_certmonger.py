"""Intune-validated SCEP end to end with the real certmonger daemon (on a private session
bus, driven as in ``conformance/scep/test_certmonger.py``, whose fixture and helpers are
used here): the served gateway's ``intune`` configuration asks the Intune simulator.

certmonger is the client of Linux machines enrolled through Intune-issued SCEP profiles
(an MDM hands it the challenge with ``getcert request -L``); what counts is that Intune
hears of exactly the certificate certmonger stored, and that a challenge Intune never
issued leaves certmonger without one.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.scep.support import Certmonger
from conformance.scep.test_certmonger import cert_matches_key, certmonger  # noqa: F401 - the fixture, shared
from gateway.store.records import CertificateFilter, CertificateRecord
from protocols.scep.ra import RA_PROFILE

from .conftest import CONFIG, IntuneEnv

CA_NAME = "INTUNE"
REFUSED_WAIT = 20.0
"""Seconds a refused request gets to reach MONITORING anyway (it must not)."""


async def add_ca(env: IntuneEnv, cm: Certmonger) -> None:
    added = await cm.getcert("add-scep-ca", "-c", CA_NAME, "-u", env.served.url(CONFIG))
    assert added.returncode == 0, added.stdout + added.stderr


async def issued(env: IntuneEnv) -> list[CertificateRecord]:
    """Device certificates of the configuration (not its RA's)."""
    return [c for c in await env.served.core.list_certificates(CertificateFilter(protocol_config=CONFIG))
            if c.profile != RA_PROFILE]


async def test_certmonger_enrolls_with_an_intune_challenge_and_intune_hears_of_it(
        env: IntuneEnv, certmonger: Certmonger, tmp_path: Path) -> None:  # noqa: F811
    await add_ca(env, certmonger)
    challenge = env.sim.issue_challenge("linux-device-1", user="bob@contoso.example", subject_cn="linux-device-1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    req = await certmonger.getcert("request", "-c", CA_NAME, "-I", "intune", "-f", str(cert_path),
                                   "-k", str(key_path), "-L", challenge, "-N", "CN=linux-device-1", "-w")
    assert req.returncode == 0, req.stdout + req.stderr
    assert await certmonger.wait_status("intune", {"MONITORING"}) == "MONITORING"
    assert cert_matches_key(cert_path, key_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=linux-device-1"

    actions = [c.action for c in env.sim.intune_calls()]
    assert actions == ["validateRequest", "successNotification"], actions
    assert len(env.sim.validations) == 1 and len(env.sim.successes) == 1 and env.sim.failures == []
    validation, success = env.sim.validations[0], env.sim.successes[0]
    assert success["transactionId"] == validation["transactionId"]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert success["certificateThumbprint"] == hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - Intune's
    assert int(success["certificateSerialNumber"], 16) == cert.serial_number
    assert env.sim.challenges[challenge].used

    stored = await issued(env)
    assert [int(c.serial, 16) for c in stored] == [cert.serial_number]
    assert stored[0].entity_id is not None
    entity = await env.served.core.get_end_entity(stored[0].entity_id)
    assert entity.attributes["intune_device"] == "linux-device-1"


async def test_certmonger_with_a_challenge_intune_never_issued_gets_nothing(
        env: IntuneEnv, certmonger: Certmonger, tmp_path: Path) -> None:  # noqa: F811
    await add_ca(env, certmonger)
    env.sim.issue_challenge("linux-device-2")  # Intune knows a challenge, just not this one
    cert_path = tmp_path / "forged.pem"
    await certmonger.getcert("request", "-c", CA_NAME, "-I", "forged", "-f", str(cert_path),
                             "-k", str(tmp_path / "forged-key.pem"), "-L", "forged-intune-challenge",
                             "-N", "CN=linux-device-2")
    status = await _settled(certmonger, "forged")
    assert status == "CA_REJECTED", status  # the gateway's failInfo badRequest: final, no retry
    assert not cert_path.exists()
    assert await issued(env) == []
    # Intune was asked and said no; nobody told it of a certificate
    assert len(env.sim.validations) >= 1 and env.sim.successes == []


async def _settled(cm: Certmonger, request_id: str) -> str:
    """certmonger's status once it has given up on the request, or the last seen when
    ``REFUSED_WAIT`` runs out (never MONITORING, which would mean it got a certificate)."""
    deadline = asyncio.get_running_loop().time() + REFUSED_WAIT
    status = ""
    while asyncio.get_running_loop().time() < deadline:
        status = await cm.status(request_id)
        if status in {"MONITORING", "CA_REJECTED", "CA_UNREACHABLE", "CA_UNCONFIGURED"}:
            return status
        await asyncio.sleep(0.3)
    return status
