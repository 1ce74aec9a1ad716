"""PKCSReq / RenewalReq end to end over a real socket, across the algorithms the field uses.

Requests are built by the test client with ``openssl cms -encrypt`` (an independent CMS
implementation); responses are opened with ``openssl cms -decrypt`` and their
signatures checked with ``openssl cms -verify`` against the test root.
"""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.scep.simulator import ScepTestClient, make_csr, openssl_verify
from gateway.ca.backend import RevocationReason
from gateway.store.records import EventFilter
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import STATIC, Env


def spki(cert_or_key: object) -> bytes:
    key = cert_or_key.public_key()  # type: ignore[attr-defined]
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def envelope_algorithms(envelope: bytes) -> tuple[str, str]:
    info = cms.ContentInfo.load(envelope)
    content = info["content"]
    eci = content["encrypted_content_info" if info["content_type"].native == "enveloped_data"
                  else "auth_encrypted_content_info"]
    ktri = content["recipient_infos"][0].chosen
    return eci["content_encryption_algorithm"]["algorithm"].native, ktri["key_encryption_algorithm"]["algorithm"].native


CIPHERS = [
    ("des-cbc", "des"), ("des-ede3-cbc", "tripledes_3key"), ("aes-128-cbc", "aes128_cbc"),
    ("aes-192-cbc", "aes192_cbc"), ("aes-256-cbc", "aes256_cbc"), ("aes-128-gcm", "aes128_gcm"),
    ("aes-256-gcm", "aes256_gcm"),
]


@pytest.mark.parametrize("cipher,asn1_name", CIPHERS, ids=[c for c, _ in CIPHERS])
async def test_pkcsreq_each_cipher_is_answered_with_the_same_cipher(env: Env, cipher: str, asn1_name: str) -> None:
    device = await env.device(cn="dev-cipher")
    body, tid, nonce = device.pkcs_req(make_csr(device.key, "dev-cipher", challenge=STATIC), cipher=cipher)
    rep = await env.post(body)
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text
    assert (rep.transaction_id, rep.recipient_nonce, rep.message_type) == (tid, nonce, "3")
    assert len(rep.sender_nonce) == 16 and rep.sender_nonce != nonce
    assert envelope_algorithms(rep.envelope) == (asn1_name, "rsaes_pkcs1v15")
    issued = device.issued(rep)  # opened by openssl cms -decrypt
    assert len(issued) == 1 and spki(issued[0]) == spki(device.key)
    assert issued[0].subject.rfc4514_string() == "CN=dev-cipher"
    chain = await env.ca_chain()
    assert rep.signer == await env.ra_certificate()
    openssl_verify(rep.raw, [chain[-1]])  # RA -> issuing -> root, checked by OpenSSL


@pytest.mark.parametrize("oaep_md", ["sha1", "sha256", "sha512"])
async def test_oaep_key_transport_is_answered_with_oaep(env: Env, oaep_md: str) -> None:
    device = await env.device()
    body, _, _ = device.pkcs_req(make_csr(device.key, "dev-oaep", challenge=STATIC), cipher="aes-128-cbc",
                                 oaep_md=oaep_md)
    rep = await env.post(body)
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text
    info = cms.ContentInfo.load(rep.envelope)
    alg = info["content"]["recipient_infos"][0].chosen["key_encryption_algorithm"]
    assert alg["algorithm"].native == "rsaes_oaep"
    assert alg["parameters"]["hash_algorithm"]["algorithm"].native == oaep_md
    assert spki(device.issued(rep)[0]) == spki(device.key)


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
async def test_response_uses_the_request_digest(env: Env, digest: str) -> None:
    device = await env.device()
    body, _, _ = device.pkcs_req(make_csr(device.key, "dev-digest", challenge=STATIC), digest=digest)
    rep = await env.post(body)
    assert rep.status is PkiStatus.SUCCESS and rep.digest == digest


async def test_enrollment_registers_the_device_and_audits(env: Env) -> None:
    device = await env.device()
    body, tid, _ = device.pkcs_req(make_csr(device.key, "printer-7", challenge=STATIC, dns=("printer-7.example",)))
    rep = await env.post(body)
    cert = device.issued(rep)[0]
    rec = await env.gw.authority.certificate(format(cert.serial_number, "x"))
    assert rec.protocol_config == "scep" and rec.profile == "device" and rec.request_id == tid
    entity = await env.core.get_end_entity(rec.entity_id)
    assert entity is not None and entity.name == "printer-7" and entity.kind == "device"
    events = await env.core.list_events(EventFilter(type="issue", protocol_config="scep"))
    assert events[0].status == "success" and events[0].serial == rec.serial
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["printer-7.example"]


async def test_renewal_signed_by_the_issued_certificate(env: Env) -> None:
    device = await env.device()
    rep = await env.post(device.pkcs_req(make_csr(device.key, "renew-me", challenge=STATIC))[0])
    old = device.issued(rep)[0]
    renewing = ScepTestClient(device.recipient, key=device.key, signer=old)
    body, tid, nonce = renewing.message("17", make_csr(device.key, "renew-me"))  # RenewalReq, no challenge
    rep2 = await env.post(body)
    assert rep2.status is PkiStatus.SUCCESS, rep2.fail_text
    assert (rep2.transaction_id, rep2.recipient_nonce) == (tid, nonce)
    new = renewing.issued(rep2)[0]  # encrypted to the old certificate
    assert new.serial_number != old.serial_number and new.subject == old.subject
    old_rec = await env.gw.authority.certificate(format(old.serial_number, "x"))
    new_rec = await env.gw.authority.certificate(format(new.serial_number, "x"))
    assert new_rec.entity_id == old_rec.entity_id
    events = await env.core.list_events(EventFilter(type="renew", protocol_config="scep"))
    assert events and events[0].status == "success"


async def test_pkcsreq_signed_by_an_existing_certificate_renews_without_challenge(env: Env) -> None:
    """NDES-style re-enrolment: a PKCSReq signed by a certificate issued here."""
    device = await env.device()
    old = device.issued(await env.post(device.pkcs_req(make_csr(device.key, "win-1", challenge=STATIC))[0]))[0]
    renewing = ScepTestClient(device.recipient, key=device.key, signer=old)
    rep = await env.post(renewing.pkcs_req(make_csr(device.key, "win-1"))[0])
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text


async def renewal_rep(env: Env, signer_cert: x509.Certificate, key: object, cn: str = "renew-me") -> object:
    client = ScepTestClient(await env.ra_certificate(), key=key, signer=signer_cert)  # type: ignore[arg-type]
    return await env.post(client.message("17", make_csr(client.key, cn), signing_time=env.clock())[0])


async def test_renewal_refused_for_foreign_revoked_and_other_subject(env: Env) -> None:
    device = await env.device()
    old = device.issued(await env.post(device.pkcs_req(make_csr(device.key, "renew-me", challenge=STATIC))[0]))[0]
    before = await env.certificate_count()
    # signed by a self-signed certificate (not issued here)
    foreign = await renewal_rep(env, device.signer, device.key)
    assert (foreign.status, foreign.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_CERT_ID)
    # a different subject
    other = await renewal_rep(env, old, device.key, cn="someone-else")
    assert (other.status, other.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    # revoked
    await env.gw.authority.revoke(format(old.serial_number, "x"), RevocationReason.key_compromise, actor="test")
    revoked = await renewal_rep(env, old, device.key)
    assert (revoked.status, revoked.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "revoked" in (revoked.fail_text or "")
    assert await env.certificate_count() == before


async def test_renewal_refused_when_disabled_or_expired(env: Env) -> None:
    device = await env.device()
    old = device.issued(await env.post(device.pkcs_req(make_csr(device.key, "renew-me", challenge=STATIC))[0]))[0]
    env.clock.fixed = old.not_valid_after_utc + dt.timedelta(days=1)  # the device's clock agrees
    expired = await renewal_rep(env, old, device.key)
    assert expired.fail_info is FailInfo.BAD_REQUEST and "validity" in (expired.fail_text or "")
    env.clock.fixed = None
    await env.core.update_protocol_config("scep", settings={"ndes": True, "renewal": False})
    disabled = await renewal_rep(env, old, device.key)
    assert (disabled.status, disabled.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    async with env.client.get(f"{env.path}?operation=GetCACaps") as resp:
        assert "Renewal" not in (await resp.text()).split()
