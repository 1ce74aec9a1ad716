"""zeep, an independent SOAP client, drives every operation of the MDM web service over
HTTPS from the served WSDL: SOAP 1.1 and 1.2, HTTP Basic and UsernameToken."""

from __future__ import annotations

import subprocess
from pathlib import Path

import aiohttp
import pytest
import zeep.exceptions
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from .conftest import CONFIG, DIGITAL_ID, MdmServer, variables

DEVICE = {"deviceName": "ipad-7", "igusername": "alice"}
SUBJECT = "CN=ipad-7,OU=alice,O=Enrollment Gateway Dev"


async def _events(mdm: MdmServer, **params: str) -> list[dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=mdm.info.ssl_context())) as s:
        async with s.get(f"{mdm.info.https}/admin/events", params={"limit": "500", **params},
                         headers={"Authorization": f"Bearer {mdm.info.api_key}"}) as r:
            assert r.status == 200
            return list((await r.json())["items"])


async def test_authenticate_over_both_soap_versions_and_both_credentials(mdm: MdmServer) -> None:
    for kwargs in ({}, {"wsse": True}, {"soap12": True}, {"soap12": True, "wsse": True}):
        svc = await mdm.client(**kwargs)  # type: ignore[arg-type]
        got = await mdm.call(svc, "Authenticate")
        assert (got.ConfigurationId, got.Platform, got.Username) == (CONFIG, "jamf", mdm.dev["username"]), kwargs


async def test_lists_digital_ids_and_profiles(mdm: MdmServer) -> None:
    svc = await mdm.client()
    ids = await mdm.call(svc, "ListDigitalIds")
    assert [d.Name for d in ids] == [DIGITAL_ID]
    did = ids[0]
    assert did.RequiredVariable == ["deviceName", "igusername"] and did.ServerKeyGeneration is True
    assert did.WebServiceUrl == f"{mdm.info.https}/mdmws/{CONFIG}/AdminService"
    assert did.ScepUrl == f"{mdm.info.http}/scep/mdm-scep"
    profiles = {p.Name: p for p in await mdm.call(svc, "ListProfiles")}
    usages = {  # written out here, not read from protocols.mdm.profiles
        "digital-signature": ({"digital_signature"}, []),
        "key-encipherment": ({"key_encipherment"}, []),
        "digsig-keyenc": ({"digital_signature", "key_encipherment"}, []),
        "digital-signature-client-auth": ({"digital_signature"}, ["client_auth"]),
        "key-encipherment-client-auth": ({"key_encipherment"}, ["client_auth"]),
        "digsig-keyenc-client-auth": ({"digital_signature", "key_encipherment"}, ["client_auth"]),
        "non-repudiation": ({"digital_signature", "content_commitment"}, []),  # as Entrust's mdmws-non-repudiation
        "digsig-non-repudiation": ({"digital_signature", "content_commitment"}, []),
    }
    expected = {f"mdmws-{slug}": (*use, False) for slug, use in usages.items()} | {
        f"mdmws-p12-{slug}": (*use, True) for slug, use in usages.items()}
    assert len(expected) == 16 and set(profiles) == set(expected)
    for name, (ku, eku, server) in expected.items():
        got = profiles[name]
        assert (set(got.KeyUsage), list(got.ExtendedKeyUsage or []), got.ServerKeyGeneration) == (ku, eku, server), name
    p = profiles["mdmws-p12-digsig-keyenc-client-auth"]
    assert set(p.KeyUsage) == {"digital_signature", "key_encipherment"} and p.ExtendedKeyUsage == ["client_auth"]
    assert p.ServerKeyGeneration is True and profiles["mdmws-digital-signature"].ServerKeyGeneration is False


async def test_enroll_returns_a_pkcs12_that_opens_with_the_generated_password(mdm: MdmServer, tmp_path: Path) -> None:
    svc = await mdm.client()
    got = await mdm.call(svc, "Enroll", DigitalId=DIGITAL_ID, DeviceId="udid-7", Variables=variables(**DEVICE))
    assert got.Password and got.Subject == SUBJECT
    key, cert, chain = pkcs12.load_key_and_certificates(got.Pkcs12, got.Password.encode())
    assert key is not None and cert is not None and chain
    assert cert.subject.rfc4514_string() == SUBJECT and f"{cert.serial_number:x}" == got.SerialNumber
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    path = tmp_path / "device.p12"
    path.write_bytes(got.Pkcs12)
    out = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", f"pass:{got.Password}", "-nokeys",
                          "-clcerts"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert x509.load_pem_x509_certificate(out.stdout[out.stdout.index("-----BEGIN"):].encode()) == cert
    wrong = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", "pass:wrong-password", "-nokeys"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0

    # the device is the end entity, and the call is audited with it
    rec = await mdm.gw.door("mdm").find_certificate(got.SerialNumber)
    entity = await mdm.gw.door("mdm").entity(rec.entity_id)
    assert entity.name == "jamf:udid-7"
    calls = [e for e in await _events(mdm, type="mdm_call") if e["detail"].get("operation") == "Enroll"]
    assert calls and calls[0]["status"] == "success" and calls[0]["serial"] == got.SerialNumber
    assert calls[0]["detail"]["platform"] == "jamf" and calls[0]["detail"]["device"] == "udid-7"
    assert got.Password not in str(await _events(mdm))


async def test_enroll_with_a_given_password_renew_revoke_and_status(mdm: MdmServer) -> None:
    svc = await mdm.client(soap12=True, wsse=True)
    first = await mdm.call(svc, "Enroll", DigitalId=DIGITAL_ID, Variables=variables(**DEVICE),
                           Password="device-password-1")
    assert first.Password is None
    pkcs12.load_key_and_certificates(first.Pkcs12, b"device-password-1")

    renewed = await mdm.call(svc, "Renew", SerialNumber=first.SerialNumber, Password="device-password-2")
    assert renewed.SerialNumber != first.SerialNumber and renewed.Subject == SUBJECT
    key, cert, _ = pkcs12.load_key_and_certificates(renewed.Pkcs12, b"device-password-2")
    old_key, _, _ = pkcs12.load_key_and_certificates(first.Pkcs12, b"device-password-1")
    assert key is not None and old_key is not None and key.public_key() != old_key.public_key()
    by_id = await mdm.call(svc, "Renew", DigitalId=DIGITAL_ID, Variables=variables(**DEVICE))
    assert by_id.Subject == SUBJECT and by_id.Password

    revoked = await mdm.call(svc, "Revoke", SerialNumber=first.SerialNumber, Reason="keyCompromise")
    assert revoked.Status == "revoked" and revoked.RevocationReason == "keyCompromise"
    status = await mdm.call(svc, "GetCertificateStatus", SerialNumber=first.SerialNumber)
    assert status.Status == "revoked" and status.RevokedAt is not None
    assert (await mdm.call(svc, "GetCertificateStatus", SerialNumber=renewed.SerialNumber)).Status == "valid"
    rec = await mdm.gw.door("mdm").find_certificate(first.SerialNumber)
    assert rec.status == "revoked" and rec.revocation_reason == 1


async def test_every_call_is_audited_with_the_device_as_end_entity(mdm: MdmServer) -> None:
    """Enroll, Renew by serial, GetCertificateStatus, Revoke and RequestScepChallenge each
    name ``jamf:<device>``;
    a call refused at authentication still names the platform."""
    svc = await mdm.client()
    door = mdm.gw.door("mdm")
    first = await mdm.call(svc, "Enroll", DigitalId=DIGITAL_ID, DeviceId="udid-42", Variables=variables(**DEVICE))
    renewed = await mdm.call(svc, "Renew", SerialNumber=first.SerialNumber)
    await mdm.call(svc, "GetCertificateStatus", SerialNumber=renewed.SerialNumber)
    await mdm.call(svc, "Revoke", SerialNumber=first.SerialNumber, Reason="superseded")
    await mdm.call(svc, "RequestScepChallenge", DigitalId=DIGITAL_ID, DeviceId="udid-42",
                   Variables=variables(**DEVICE))
    bad = await mdm.client(password="wrong-password")
    with pytest.raises(zeep.exceptions.Fault):
        await mdm.call(bad, "Revoke", SerialNumber=renewed.SerialNumber)
    calls = {e["detail"]["operation"]: e for e in await _events(mdm, type="mdm_call")}
    for op in ("Enroll", "Renew", "GetCertificateStatus", "RequestScepChallenge"):
        assert calls[op]["status"] == "success", op
        assert calls[op]["detail"]["entity"] == "jamf:udid-42", (op, calls[op]["detail"])
        assert calls[op]["detail"]["device"] == "udid-42", op
    revokes = [e for e in await _events(mdm, type="mdm_call") if e["detail"]["operation"] == "Revoke"]
    assert {e["status"] for e in revokes} == {"success", "failure"}
    ok = next(e for e in revokes if e["status"] == "success")
    assert ok["detail"]["entity"] == "jamf:udid-42" and ok["serial"] == first.SerialNumber
    refused = next(e for e in revokes if e["status"] == "failure")
    assert refused["detail"]["fault"] == "AuthenticationFailed" and refused["detail"]["platform"] == "jamf"
    assert refused["detail"].get("entity") is None  # nothing about the certificate is told before authentication


async def test_renew_by_serial_keeps_the_profile_and_the_end_entity(mdm: MdmServer) -> None:
    """The renewed certificate is issued under the old one's profile (not the dev digital
    ID's, nor a default) and joins the same end entity; its key is new."""
    from protocols.mdm.manage import add_digital_id

    door = mdm.gw.door("mdm")
    await add_digital_id(door, CONFIG, "signer", {"profile": "mdmws-p12-digsig-non-repudiation",
                                                  "rdn_format": "CN=<udid>", "parent_dn": "O=Acme"}, actor="test")
    svc = await mdm.client()
    first = await mdm.call(svc, "Enroll", DigitalId="signer", Variables=variables(udid="u-77"))
    renewed = await mdm.call(svc, "Renew", SerialNumber=first.SerialNumber)
    old = await door.find_certificate(first.SerialNumber)
    new = await door.find_certificate(renewed.SerialNumber)
    assert new.serial != old.serial and new.subject == old.subject == "CN=u-77,O=Acme"
    assert new.profile == old.profile == "mdmws-p12-digsig-non-repudiation"
    assert new.entity_id == old.entity_id and (await door.entity(new.entity_id)).name == "jamf:u-77"
    cert = x509.load_der_x509_certificate(new.der)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_encipherment
    assert not any(isinstance(e.value, x509.ExtendedKeyUsage) for e in cert.extensions)
    assert cert.public_key() != x509.load_der_x509_certificate(old.der).public_key()


async def test_a_credential_named_like_a_digital_id_is_that_digital_ids_own_login(mdm: MdmServer) -> None:
    """The digital ID as the username: a platform whose connector has only URL, username and
    password enters the digital ID's name and its credential's password; the requests then
    need no DigitalId, and that login serves that digital ID alone."""
    from protocols.mdm.manage import add_credential, add_digital_id

    from .test_refusals import fault_code

    door = mdm.gw.door("mdm")
    await add_digital_id(door, CONFIG, "wifi", {"profile": "mdmws-p12-digital-signature",
                                               "rdn_format": "CN=<udid>", "parent_dn": "O=Wifi"}, actor="test")
    login = await add_credential(door, CONFIG, "wifi", actor="test")
    svc = await mdm.client("wifi", login.secret)
    assert [d.Name for d in await mdm.call(svc, "ListDigitalIds")] == ["wifi"]
    got = await mdm.call(svc, "Enroll", Variables=variables(udid="u-42"))  # no DigitalId
    assert got.Subject == "CN=u-42,O=Wifi"
    challenge = await mdm.call(svc, "RequestScepChallenge", Variables=variables(udid="u-43"))
    assert challenge.Subject == "CN=u-43,O=Wifi"
    # another digital ID is not this login's, and a wrong password is still wrong
    assert await fault_code(mdm, svc, "Enroll", DigitalId=DIGITAL_ID, Variables=variables(**DEVICE)) == "Forbidden"
    wrong = await mdm.client("wifi", "not-the-password")
    assert await fault_code(mdm, wrong, "Enroll", Variables=variables(udid="u-44")) == "AuthenticationFailed"
    # a credential that names no digital ID serves all of them, and must say which
    dev = await mdm.client()
    assert {d.Name for d in await mdm.call(dev, "ListDigitalIds")} == {DIGITAL_ID, "wifi"}
    assert await fault_code(mdm, dev, "Enroll", Variables=variables(**DEVICE)) == "InvalidRequest"
