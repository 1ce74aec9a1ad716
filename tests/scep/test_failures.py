"""Negative cases: each is answered with a correctly addressed FAILURE CertRep carrying the
right failInfo, and nothing is issued."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conformance.scep.simulator import (
    ScepTestClient,
    make_csr,
    openssl_envelope,
    self_signed,
)
from protocols.scep.challenge import issue_dynamic_challenge
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import STATIC, Env


async def assert_failure(env: Env, body: bytes, tid: str, nonce: bytes, fail: FailInfo, text: str = "") -> None:
    before = await env.certificate_count()
    rep = await env.post(body)
    assert rep.status is PkiStatus.FAILURE and rep.fail_info is fail, (rep.fail_info, rep.fail_text)
    assert (rep.transaction_id, rep.recipient_nonce, rep.message_type) == (tid, nonce, "3")
    assert rep.signer == await env.ra_certificate()
    assert text in (rep.fail_text or "")
    assert await env.certificate_count() == before


async def dynamic(env: Env, **kw: object) -> str:
    settings = {"ttl": dt.timedelta(minutes=60), "limit": 100, "source": "api", "issued_by": "test"}
    settings.update(kw)
    return (await issue_dynamic_challenge(env.repo, "scep", **settings)).challenge  # type: ignore[arg-type]


async def test_wrong_or_missing_challenge(env: Env) -> None:
    device = await env.device()
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "d", challenge="wrong-challenge")),
                         FailInfo.BAD_REQUEST, "challenge password is not valid")
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "d")), FailInfo.BAD_REQUEST, "required")


async def test_dynamic_challenge_is_single_use(env: Env) -> None:
    challenge = await dynamic(env)
    first = await env.device()
    rep = await env.post(first.pkcs_req(make_csr(first.key, "one", challenge=challenge))[0])
    assert rep.status is PkiStatus.SUCCESS
    second = await env.device()
    await assert_failure(env, *second.pkcs_req(make_csr(second.key, "two", challenge=challenge)),
                         FailInfo.BAD_REQUEST, "already used")


async def test_resending_the_same_pkcsreq_returns_the_same_certificate(env: Env) -> None:
    """A client that lost the answer resends: same certificate, challenge not spent twice."""
    challenge = await dynamic(env)
    device = await env.device()
    body, _tid, _nonce = device.pkcs_req(make_csr(device.key, "resend", challenge=challenge))
    first = device.issued(await env.post(body))[0]
    count = await env.certificate_count()
    again = await env.post(body)
    assert again.status is PkiStatus.SUCCESS and device.issued(again)[0] == first
    assert await env.certificate_count() == count


async def test_expired_challenge(env: Env) -> None:
    env.clock.fixed = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    challenge = await dynamic(env, now=env.clock.fixed)
    env.clock.fixed = None
    device = await env.device()
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "late", challenge=challenge)),
                         FailInfo.BAD_REQUEST, "expired")


async def test_subject_bound_challenge(env: Env) -> None:
    challenge = await dynamic(env, bound_subject="CN=kiosk-12")
    other = await env.device()
    await assert_failure(env, *other.pkcs_req(make_csr(other.key, "kiosk-13", challenge=challenge)),
                         FailInfo.BAD_REQUEST, "another subject")
    # the refusal did not spend it: the right device still enrolls with it
    right = await env.device()
    rep = await env.post(right.pkcs_req(make_csr(right.key, "kiosk-12", challenge=challenge))[0])
    assert rep.status is PkiStatus.SUCCESS


async def test_refused_csr_gives_the_challenge_back(env: Env) -> None:
    """Bad input changes nothing: a CSR refused by policy does not burn a one-time challenge."""
    challenge = await dynamic(env)
    device = await env.device()
    bad_san = make_csr(device.key, "d", challenge=challenge, dns=("bad_name!.example",))
    rep = await env.post(device.pkcs_req(bad_san)[0])
    assert rep.status is PkiStatus.FAILURE and rep.fail_info is FailInfo.BAD_REQUEST
    rep = await env.post(device.pkcs_req(make_csr(device.key, "d", challenge=challenge))[0])
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text


async def test_tampered_signature(env: Env) -> None:
    device = await env.device()
    body, tid, nonce = device.pkcs_req(make_csr(device.key, "d", challenge=STATIC))
    info = cms.ContentInfo.load(body)
    si = info["content"]["signer_infos"][0]
    sig = bytearray(si["signature"].native)
    sig[-1] ^= 0x01
    si["signature"] = bytes(sig)
    await assert_failure(env, info.dump(force=True), tid, nonce, FailInfo.BAD_MESSAGE_CHECK, "does not verify")


async def test_tampered_content(env: Env) -> None:
    device = await env.device()
    csr = make_csr(device.key, "d", challenge=STATIC)
    body, tid, nonce = device.pkcs_req(csr)
    other_envelope = openssl_envelope(csr, device.recipient)
    info = cms.ContentInfo.load(body)
    info["content"]["encap_content_info"]["content"] = other_envelope
    await assert_failure(env, info.dump(force=True), tid, nonce, FailInfo.BAD_MESSAGE_CHECK, "messageDigest")


async def test_envelope_for_another_recipient(env: Env) -> None:
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    device = await env.device()
    device.recipient = self_signed(stranger_key, "not the RA")
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "d", challenge=STATIC)),
                         FailInfo.BAD_MESSAGE_CHECK, "cannot be decrypted")


async def test_cipher_not_allowed_and_weak_digest(env: Env) -> None:
    await env.core.update_protocol_config("scep", settings={"content_encryption": ["aes-256-cbc"],
                                                                "digests": ["sha256"]})
    device = await env.device()
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "d", challenge=STATIC), cipher="des-cbc"),
                         FailInfo.BAD_ALG, "des-cbc")
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "d", challenge=STATIC), digest="sha1"),
                         FailInfo.BAD_ALG, "sha1")


async def test_unsupported_cipher_rc2(env: Env) -> None:
    device = await env.device()
    csr = make_csr(device.key, "d", challenge=STATIC)
    import subprocess
    import tempfile
    from pathlib import Path

    from conformance.scep.simulator import LEGACY, pem

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "r.pem").write_bytes(pem(device.recipient))
        envelope = subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-outform", "DER", "-rc2", *LEGACY,
                                   str(Path(tmp) / "r.pem")], input=csr, capture_output=True, check=True).stdout
    await assert_failure(env, *device.pkcs_req(csr, envelope=envelope), FailInfo.BAD_ALG, "rc2")


async def test_weak_request_key(env: Env) -> None:
    device = await env.device()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    await assert_failure(env, *device.pkcs_req(make_csr(weak, "d", challenge=STATIC)), FailInfo.BAD_ALG, "1024")


async def test_signer_that_cannot_receive_the_answer(env: Env) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ec_key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(ec_key, hashes.SHA256()))
    device = ScepTestClient(await env.ra_certificate(), key=ec_key, signer=cert)  # type: ignore[arg-type]
    await assert_failure(env, *device.pkcs_req(make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                                        "d", challenge=STATIC)), FailInfo.BAD_ALG, "RSA")


async def test_signing_time_too_far_off(env: Env) -> None:
    device = await env.device()
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    await assert_failure(env, *device.pkcs_req(make_csr(device.key, "d", challenge=STATIC), signing_time=stale),
                         FailInfo.BAD_TIME, "signingTime")
    await env.core.update_protocol_config("scep", settings={"max_clock_skew": None})
    rep = await env.post(device.pkcs_req(make_csr(device.key, "d", challenge=STATIC), signing_time=stale)[0])
    assert rep.status is PkiStatus.SUCCESS


@pytest.mark.parametrize("message_type", ["3", "99"])
async def test_not_a_request_message_type(env: Env, message_type: str) -> None:
    device = await env.device()
    await assert_failure(env, *device.message(message_type, make_csr(device.key, "d", challenge=STATIC)),
                         FailInfo.BAD_REQUEST, "not a request")


async def test_failures_are_audited_without_secrets(env: Env) -> None:
    from gateway.store.records import EventFilter

    device = await env.device()
    await env.post(device.pkcs_req(make_csr(device.key, "d", challenge="secret-guess-123"))[0])
    events = await env.core.list_events(EventFilter(type="scep_request", status="failure"))
    assert events and events[0].detail["fail_info"] == "BAD_REQUEST"
    assert "secret-guess-123" not in repr([e.detail for e in events])
