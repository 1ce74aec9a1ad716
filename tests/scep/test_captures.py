"""Replay of real client messages from ../shared/captures/scep (see its README).

- ``apple-macos-pkcsreq``: the gateway is configured with that capture's CA/RA
  certificate and key as its RA (expired now, so time checks are judged at the
  capture's signingTime). The PKCSReq decrypts (3DES, RSA PKCS#1 v1.5) and verifies
  (SHA-1), but its inner CSR is RSA-1024 and has no challenge: the gateway refuses keys
  below 2048 bits whatever the policy, so the right answer is a FAILURE CertRep with
  ``badAlg``, correctly signed by that RA and addressed to the Mac (transactionID and
  recipientNonce), with nothing issued.
- ``cryptlib-samples``: encrypted to another CA ("Dave Himself"), whose key is not
  published. The signature must verify (SHA-256, an extra randomNonce attribute, a
  non-hex transactionID) and the answer is a FAILURE ``badMessageCheck`` CertRep
  addressed to the requester, since the envelope is not for this RA.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509

from conformance.harness import SHARED_CAPTURES, in_ci
from conformance.scep.simulator import parse_cert_rep
from protocols.scep.envelope import Recipient, open_envelope
from protocols.scep.message import parse_pki_message
from protocols.scep.ra import RaKeyring, import_ra
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import Env

CAPTURES = SHARED_CAPTURES / "scep"
APPLE = CAPTURES / "apple-macos-pkcsreq"
CRYPTLIB = CAPTURES / "cryptlib-samples"


def require_captures(path: Path) -> Path:
    if path.is_dir():
        return path
    message = f"shared captures missing at {path}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


def apple_ra() -> tuple[x509.Certificate, object]:
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((APPLE / "testca" / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((APPLE / "testca" / "ca.key.unencrypted.pem").read_bytes(), None)
    return cert, key


async def test_apple_pkcsreq_decrypts_with_the_capture_key_like_openssl() -> None:
    require_captures(APPLE)
    msg = parse_pki_message((APPLE / "PKCSReq.der").read_bytes())
    assert msg.transaction_id == "A13090761A30F66664F85D37433D2065E1112BA1"
    assert msg.sender_nonce.hex() == "ae7fe8816cc6bedd" and msg.digest_name == "sha1"
    cert, key = apple_ra()
    opened = open_envelope(msg.content, [Recipient(cert, key)])  # type: ignore[arg-type]
    assert (opened.algorithms.content, opened.algorithms.key_transport_name) == ("tripledes_3key", "rsaes_pkcs1v15")
    reference = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-recip", str(APPLE / "testca" / "ca.pem"),
         "-inkey", str(APPLE / "testca" / "ca.key.unencrypted.pem")],
        input=msg.content, capture_output=True, check=True).stdout
    assert opened.plaintext == reference


async def test_apple_pkcsreq_replay_yields_badalg_certrep_addressed_to_the_mac(env: Env) -> None:
    require_captures(APPLE)
    raw = (APPLE / "PKCSReq.der").read_bytes()
    await env.gw.authority.create_config("apple", "scep", "issuing", ["device"])
    await import_ra(env.door, env.repo, "apple", (APPLE / "testca" / "ca.pem").read_bytes(),
                    (APPLE / "testca" / "ca.key.unencrypted.pem").read_bytes(), force=True)  # expired in 2026
    env.service.keyring = RaKeyring(env.door, env.repo)
    env.clock.fixed = dt.datetime(2016, 5, 31, 11, 30, 13, tzinfo=dt.UTC)  # the capture's signingTime
    before = await env.certificate_count("apple")
    rep = await env.post(raw, "/scep/apple")
    ra_cert, _ = apple_ra()
    assert rep.signer == ra_cert  # signed by the capture's RA, signature checked by parse_cert_rep
    assert (rep.status, rep.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_ALG)
    assert "below 2048 bits" in (rep.fail_text or "")  # known only after decrypting the 3DES envelope
    assert rep.transaction_id == "A13090761A30F66664F85D37433D2065E1112BA1"
    assert rep.recipient_nonce == bytes.fromhex("ae7fe8816cc6bedd")
    assert rep.digest == "sha1" and rep.envelope == b""
    assert await env.certificate_count("apple") == before
    # Judged at today's time instead, the same bytes are a stale message (badTime).
    env.clock.fixed = None
    stale = await env.post(raw, "/scep/apple")
    assert stale.fail_info is FailInfo.BAD_TIME


async def test_micromdm_reference_certrep_parses_like_ours() -> None:
    """The paired server CertRep (DES, BER constructed OCTET STRING) verifies with the
    capture CA and is addressed the way ours are."""
    require_captures(APPLE)
    rep = parse_cert_rep_lenient((APPLE / "CertRep-micromdm-server.der").read_bytes())
    ra_cert, _ = apple_ra()
    assert rep.signer == ra_cert and rep.status is PkiStatus.SUCCESS
    assert rep.transaction_id == "A13090761A30F66664F85D37433D2065E1112BA1"
    assert rep.recipient_nonce == bytes.fromhex("ae7fe8816cc6bedd")
    from gateway.edge.der import normalize_envelope

    env_info = cms.ContentInfo.load(normalize_envelope(rep.envelope))
    assert env_info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native == "des"


def parse_cert_rep_lenient(data: bytes):  # type: ignore[no-untyped-def]
    from gateway.edge.der import normalize_octet_strings

    try:
        return parse_cert_rep(data)
    except ValueError:
        return parse_cert_rep(normalize_octet_strings(data))


async def test_cryptlib_pkcsreq_not_for_us_is_verified_and_answered_badmessagecheck(env: Env) -> None:
    require_captures(CRYPTLIB)
    raw = (CRYPTLIB / "scep_req2.der").read_bytes()
    msg = parse_pki_message(raw)
    assert msg.content == (CRYPTLIB / "scep_req1.der").read_bytes()  # layer 2 unwraps to layer 1
    assert msg.transaction_id == "7XXEY-ERLPU-2JDR9" and msg.digest_name == "sha256"
    env.clock.fixed = dt.datetime(2018, 1, 14, 14, 39, 49, tzinfo=dt.UTC)
    rep = await env.post(raw)
    assert (rep.status, rep.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_MESSAGE_CHECK)
    assert "cannot be decrypted" in (rep.fail_text or "")  # the signature itself verified
    assert rep.transaction_id == "7XXEY-ERLPU-2JDR9" and rep.recipient_nonce == msg.sender_nonce
    assert rep.signer == await env.ra_certificate() and rep.digest == "sha256"
    # flip one signature bit: now it is the signature that fails
    info = cms.ContentInfo.load(raw)
    si = info["content"]["signer_infos"][0]
    sig = bytearray(si["signature"].native)
    sig[10] ^= 0x40
    si["signature"] = bytes(sig)
    tampered = await env.post(info.dump(force=True))
    assert tampered.fail_info is FailInfo.BAD_MESSAGE_CHECK and "does not verify" in (tampered.fail_text or "")


async def test_cryptlib_reference_response_layers() -> None:
    require_captures(CRYPTLIB)
    rep = parse_cert_rep((CRYPTLIB / "scep_resp2.der").read_bytes())  # signature verifies
    req = parse_pki_message((CRYPTLIB / "scep_req2.der").read_bytes())
    assert rep.status is PkiStatus.SUCCESS and rep.recipient_nonce == req.sender_nonce
    assert rep.transaction_id == req.transaction_id
    assert rep.envelope == (CRYPTLIB / "scep_resp1.der").read_bytes()
    from protocols.scep.cms import certificates_of_degenerate

    issued = certificates_of_degenerate((CRYPTLIB / "scep_resp0.der").read_bytes())
    assert issued[0].subject.rfc4514_string().startswith("CN=Test SCEP PKI user")



