"""cacerts, simpleenroll, csrattrs, fullcmc and labels over the real HTTPS listener.

Every refusal is checked twice: the right HTTP status on the wire, and nothing
issued in the store.
"""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.ca.backend import RevocationReason
from gateway.store.records import EventFilter
from protocols.est import wire

from .helpers import (
    EstServer,
    b64,
    core,
    csrattrs_items,
    device_certificate,
    make_csr,
    manufacturer_ca,
    trust_at_listener,
)


def _lines_ok(body: bytes) -> bool:
    lines = body.split(b"\r\n")
    return lines[-1] == b"" and all(0 < len(line) <= 76 for line in lines[:-1])


# --- cacerts ------------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["est", None])
async def test_cacerts_returns_the_chain_base64_without_authentication(est: EstServer, label: str | None) -> None:
    reply = await est.get("cacerts", label=label)
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert reply.headers["Content-Transfer-Encoding"] == "base64"
    assert _lines_ok(reply.body)
    ca = await est.gw.cas.local("issuing")
    assert {c.subject for c in reply.certificates} == {c.subject for c in await ca.chain()}
    assert ca.certificate in reply.certificates


async def test_unknown_and_disabled_labels(est: EstServer) -> None:
    assert (await est.get("cacerts", label="nope")).status == 404
    assert (await est.get("cacerts", label="Bad Label")).status == 404
    await est.label("off", users={"user": "p"})
    await core(est.gw).update_config("off", enabled=False)
    reply = await est.get("cacerts", label="off")
    assert reply.status == 403 and "disabled" in reply.text
    assert (await est.get("nosuchop")).status == 404
    assert (await est.request("GET", "simpleenroll")).status == 405


async def test_a_label_of_another_protocol_is_not_an_est_label(est: EstServer) -> None:
    await est.gw.authority.create_config("scepish", "scep", "issuing", ["device"])
    assert (await est.get("cacerts", label="scepish")).status == 404


# --- simpleenroll with HTTP Basic ------------------------------------------------------------

async def test_simpleenroll_with_basic_auth_issues_what_the_csr_asks(est: EstServer) -> None:
    csr, key = make_csr("device-7", ["device-7.example.net"])
    reply = await est.post("simpleenroll", b64(csr), auth=await est.dev_auth())
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert _lines_ok(reply.body)
    [cert] = reply.certificates  # only the issued certificate (RFC 7030 4.2.3)
    assert cert.subject.rfc4514_string() == "CN=device-7"
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["device-7.example.net"]
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert.verify_directly_issued_by((await est.gw.cas.local("issuing")).certificate)
    record = await est.gw.authority.certificate(format(cert.serial_number, "x"))
    assert record.protocol_config == "est" and record.profile == "device"
    entity = await core(est.gw).entity(record.entity_id)
    assert entity.name == "device-7" and entity.protocol_config == "est"
    [event] = await core(est.gw).events(EventFilter(type="issue", protocol_config="est"))
    assert event.status == "success" and event.detail["actor"] == "est-user:est"


@pytest.mark.parametrize("encoding", ["base64-one-line", "base64-lf", "base64-cte-header", "pem", "der",
                                      "no-content-type", "curl-default-content-type"])
async def test_request_encodings_rfc8951(est: EstServer, encoding: str) -> None:
    csr, _ = make_csr(f"enc-{encoding}")
    der = csr.public_bytes(serialization.Encoding.DER)
    body, content_type, headers = {
        "base64-one-line": (b64(csr, None), "application/pkcs10", {}),
        "base64-lf": (b64(csr, 64), "application/pkcs10", {}),
        "base64-cte-header": (b64(csr, 76), "application/pkcs10", {"Content-Transfer-Encoding": "base64"}),
        "pem": (csr.public_bytes(serialization.Encoding.PEM), "application/pkcs10", {}),
        "der": (der, "application/pkcs10", {}),
        "no-content-type": (b64(csr), None, {}),
        "curl-default-content-type": (b64(csr), "application/x-www-form-urlencoded", {}),
    }[encoding]
    reply = await est.post("simpleenroll", body, auth=await est.dev_auth(), content_type=content_type,
                           headers=headers)
    assert reply.status == 200, reply.text
    assert reply.certificates[0].subject.rfc4514_string() == f"CN=enc-{encoding}"


async def test_no_credentials_is_a_401_challenge_and_issues_nothing(est: EstServer) -> None:
    csr, _ = make_csr("anon")
    reply = await est.post("simpleenroll", b64(csr))
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="EST est"'
    assert reply.body == b""  # Bouncy Castle reads nothing from a challenge
    assert await est.issued() == 0
    assert await est.events(type="auth") == []  # a first unauthenticated try is no incident


@pytest.mark.parametrize("auth", [("est", "wrong-password"), ("nobody", "x"), "Basic !!!", "Bearer abc"])
async def test_wrong_credentials_are_refused_audited_and_issue_nothing(est: EstServer, auth: object) -> None:
    csr, _ = make_csr("intruder")
    reply = await est.post("simpleenroll", b64(csr), auth=auth)  # type: ignore[arg-type]
    assert reply.status == 401 and reply.headers["WWW-Authenticate"] == 'Basic realm="EST est"'
    assert await est.issued() == 0
    [event] = await est.events(type="auth")
    assert event.status == "failure" and event.protocol_config == "est"
    assert "wrong-password" not in str(event.detail)


@pytest.mark.parametrize("body,fragment", [
    (b"MIIB!!!!", "neither base64 nor DER"),
    (b"MIIBIjANBgkqhkiG9w0BAQ", "not valid base64"),
    (base64.b64encode(b"\x30\x03\x02\x01\x05"), "PKCS#10"),
    (base64.b64encode(b"\x30\x82\x01\x00" + b"\x00" * 40), "PKCS#10"),
])
async def test_malformed_base64_or_der_is_400_and_issues_nothing(est: EstServer, body: bytes, fragment: str) -> None:
    reply = await est.post("simpleenroll", body, auth=await est.dev_auth())
    assert reply.status == 400 and reply.headers["Content-Type"].startswith("text/plain")
    assert fragment in reply.text
    assert await est.issued() == 0


async def test_bad_signature_and_sha1_csrs_are_400(est: EstServer, tmp_path: Path) -> None:
    from tests.support import openssl

    csr, _ = make_csr("tampered")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1
    reply = await est.post("simpleenroll", base64.b64encode(bytes(der)), auth=await est.dev_auth())
    assert reply.status == 400 and "signature" in reply.text
    # cryptography will not sign with SHA-1; openssl still does, as old clients do.
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "old.key"),
            "-subj", "/CN=old-client", "-sha1", "-outform", "DER", "-out", str(tmp_path / "old.der"))
    sha1 = base64.b64encode((tmp_path / "old.der").read_bytes())
    reply = await est.post("simpleenroll", sha1, auth=await est.dev_auth())
    assert reply.status == 400 and "SHA1" in reply.text
    assert await est.issued() == 0


async def test_wrong_media_type_is_415(est: EstServer) -> None:
    csr, _ = make_csr("json")
    reply = await est.post("simpleenroll", b64(csr), auth=await est.dev_auth(), content_type="application/json")
    assert reply.status == 415 and await est.issued() == 0


async def test_profile_policy_refusal_is_403_and_issues_nothing(est: EstServer) -> None:
    await est.label("servers", users={"user": "p"}, profiles=["tls-server"])
    csr, _ = make_csr("not a host name")
    reply = await est.post("simpleenroll", b64(csr), label="servers", auth=("user", "p"))
    assert reply.status == 403 and await est.issued("servers") == 0


async def test_deactivated_entity_gets_nothing(est: EstServer) -> None:
    csr, _ = make_csr("retired-device")
    assert (await est.post("simpleenroll", b64(csr), auth=await est.dev_auth())).status == 200
    entity = await core(est.gw).find_entity("retired-device", "est")
    await est.gw.authority.set_entity_status(entity.id, "inactive", actor="test")
    again, _ = make_csr("retired-device")
    reply = await est.post("simpleenroll", b64(again), auth=await est.dev_auth())
    assert reply.status == 403 and await est.issued() == 1


# --- simpleenroll with TLS client certificates ------------------------------------------------

async def test_certificate_label_takes_gateway_certificates_not_passwords(est: EstServer) -> None:
    await est.label("certs", users={"user": "p"}, auth="certificate")
    cred = await est.client_cert("bootstrap-1")
    csr, _ = make_csr("device-9")
    ok = await est.post("simpleenroll", b64(csr), label="certs", cert=cred)
    assert ok.status == 200 and ok.certificates[0].subject.rfc4514_string() == "CN=device-9"
    [event] = await est.events(type="issue", protocol_config="certs")
    assert event.detail["actor"] == "est-cert:CN=bootstrap-1"
    for kwargs in ({"auth": ("user", "p")}, {}):
        reply = await est.post("simpleenroll", b64(make_csr("device-10")[0]), label="certs", **kwargs)
        assert reply.status == 403 and "client certificate" in reply.text
        assert "WWW-Authenticate" not in reply.headers
    assert await est.issued("certs") == 1


async def test_both_requires_certificate_and_password(est: EstServer) -> None:
    await est.label("strict", users={"user": "p"}, auth="both")
    cred = await est.client_cert("strict-client")
    csr, _ = make_csr("strict-device")
    assert (await est.post("simpleenroll", b64(csr), label="strict", cert=cred)).status == 401
    assert (await est.post("simpleenroll", b64(csr), label="strict", auth=("user", "p"))).status == 403
    assert (await est.post("simpleenroll", b64(csr), label="strict", cert=cred, auth=("user", "x"))).status == 401
    assert await est.issued("strict") == 0
    ok = await est.post("simpleenroll", b64(csr), label="strict", cert=cred, auth=("user", "p"))
    assert ok.status == 200


async def test_revoked_client_certificate_is_refused_even_with_a_password(est: EstServer) -> None:
    cred = await est.client_cert("stolen-laptop")
    await est.gw.authority.revoke(format(cred.certificate.serial_number, "x"), RevocationReason.key_compromise,
                                  actor="test")
    csr, _ = make_csr("stolen-laptop-2")
    reply = await est.post("simpleenroll", b64(csr), cert=cred, auth=await est.dev_auth())
    assert reply.status == 403 and "revoked" in reply.text
    assert await est.issued() == 0
    assert any(e.status == "failure" for e in await est.events(type="auth", protocol_config="est"))


@pytest.fixture
def manufacturer(tmp_path: Path, prepare: list) -> tuple:
    """A device maker's CA, trusted by the listener ([tls].client_trust_anchors).

    Request it before ``est`` so the listener starts with it."""
    ca, key, path = manufacturer_ca(tmp_path)
    prepare.append(lambda data_dir: trust_at_listener(data_dir, path))
    return ca, key, path


async def test_manufacturer_idevid_authenticates_only_where_its_ca_is_an_anchor(manufacturer: tuple, est: EstServer,
                                                                             tmp_path: Path) -> None:
    ca, ca_key, path = manufacturer
    await est.label("factory", auth="certificate", client_trust_anchors=[path.read_text()])
    idevid = device_certificate(ca, ca_key, "SN-000123", tmp_path)
    csr, _ = make_csr("SN-000123", ["sn-000123.devices.example"])
    ok = await est.post("simpleenroll", b64(csr), label="factory", cert=idevid)
    assert ok.status == 200 and ok.certificates[0].subject.rfc4514_string() == "CN=SN-000123"
    # The listener trusts the maker's CA, but the dev label does not: the certificate is ignored there.
    reply = await est.post("simpleenroll", b64(csr), cert=idevid)
    assert reply.status == 401 and "WWW-Authenticate" in reply.headers
    await est.label("certonly", auth="certificate")
    reply = await est.post("simpleenroll", b64(csr), label="certonly", cert=idevid)
    assert reply.status == 403 and "does not accept" in reply.text
    assert await est.issued() == 0 and await est.issued("certonly") == 0


async def test_expired_idevid_is_refused_by_the_handshake(manufacturer: tuple, est: EstServer, tmp_path: Path) -> None:
    ca, ca_key, path = manufacturer
    await est.label("factory", auth="certificate", client_trust_anchors=[path.read_text()])
    expired = device_certificate(ca, ca_key, "SN-OLD", tmp_path, days=-1)
    with pytest.raises(aiohttp.ClientError):
        await est.post("simpleenroll", b64(make_csr("SN-OLD")[0]), label="factory", cert=expired)
    assert await est.issued("factory") == 0


async def test_client_certificate_from_an_untrusted_ca_fails_the_handshake(est: EstServer, tmp_path: Path) -> None:
    ca, ca_key, _ = manufacturer_ca(tmp_path, "Rogue CA")  # not listed in [tls].client_trust_anchors
    rogue = device_certificate(ca, ca_key, "SN-ROGUE", tmp_path)
    with pytest.raises(aiohttp.ClientError):
        await est.post("simpleenroll", b64(make_csr("rogue")[0]), cert=rogue, auth=await est.dev_auth())
    assert await est.issued() == 0


# --- csrattrs, fullcmc, defaults, misconfiguration --------------------------------------------

async def test_csrattrs_of_the_dev_label(est: EstServer) -> None:
    reply = await est.get("csrattrs")
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/csrattrs"
    assert reply.headers["Content-Transfer-Encoding"] == "base64" and _lines_ok(reply.body)
    items = csrattrs_items(base64.b64decode(reply.body))
    assert [oid for oid, _ in items] == ["1.2.840.10045.4.3.2", "1.2.840.10045.2.1", "1.2.840.113549.1.9.16.2.61"]
    assert items[1][1] == [bytes.fromhex("06082a8648ce3d030107")]  # id-ecPublicKey: secp256r1


async def test_csrattrs_absent_is_204_and_can_require_authentication(est: EstServer) -> None:
    await est.label("plain", users={"user": "p"})
    reply = await est.get("csrattrs", label="plain")
    assert reply.status == 204 and reply.body == b""
    await est.label("private", users={"user": "p"}, csrattrs={"oids": ["challengePassword"]}, csrattrs_auth=True)
    assert (await est.get("csrattrs", label="private")).status == 401
    reply = await est.get("csrattrs", label="private", auth=("user", "p"))
    assert reply.status == 200 and base64.b64decode(reply.body) == bytes.fromhex("300b06092a864886f70d010907")


async def test_fullcmc_is_a_documented_501(est: EstServer) -> None:
    reply = await est.post("fullcmc", b"MIIB", content_type="application/pkcs7-mime")
    assert reply.status == 501 and "Full CMC" in reply.text


async def test_the_default_label_serves_without_a_label_segment(est: EstServer) -> None:
    csr, _ = make_csr("no-label")
    assert (await est.post("simpleenroll", b64(csr), label=None, auth=await est.dev_auth())).status == 200
    await est.label("fleet", users={"fleet": "secret"}, default=True)
    dev = await core(est.gw).config("est")
    await core(est.gw).update_config("est", settings={k: v for k, v in dev.settings.items() if k != "default"})
    reply = await est.post("simpleenroll", b64(make_csr("fleet-1")[0]), label=None, auth=("fleet", "secret"))
    assert reply.status == 200 and await est.issued("fleet") == 1


async def test_misconfigured_label_is_503_for_the_operator(est: EstServer) -> None:
    await est.label("broken", users={"user": "p"})
    await core(est.gw).update_config("broken", settings={"auth": "telepathy"})
    reply = await est.get("cacerts", label="broken")
    assert reply.status == 503 and "misconfigured" in reply.text


async def test_responses_are_real_pkcs7_for_openssl(est: EstServer, tmp_path: Path) -> None:
    """What curl users pipe into openssl: base64 -d | pkcs7 -inform DER -print_certs."""
    from tests.support import openssl

    reply = await est.post("simpleenroll", b64(make_csr("openssl-check")[0]), auth=await est.dev_auth())
    (tmp_path / "r.b64").write_bytes(reply.body)
    openssl("base64", "-d", "-in", str(tmp_path / "r.b64"), "-out", str(tmp_path / "r.der"))
    out = openssl("pkcs7", "-inform", "DER", "-in", str(tmp_path / "r.der"), "-print_certs").stdout
    assert "subject=CN = openssl-check" in out
    assert wire.CERTS_ONLY in reply.headers["Content-Type"]
