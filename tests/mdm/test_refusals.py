"""What the MDM web service refuses: a SOAP fault with a stable code, and nothing issued."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import zeep.exceptions

from protocols.mdm.manage import add_credential, add_digital_id, create_configuration

from .conftest import DIGITAL_ID, MdmServer, outstanding_challenges, variables

NS = "urn:enrollment-gateway:mdmws:1"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
DEVICE = {"deviceName": "ipad-7", "igusername": "alice"}


async def issued(mdm: MdmServer) -> int:
    from gateway.store.records import CertificateFilter

    async with mdm.gw.store.read() as q:
        return len(list(await q.certificates.list(CertificateFilter(), limit=10000)))


async def fault_code(mdm: MdmServer, svc: Any, operation: str, **kwargs: Any) -> str:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await mdm.call(svc, operation, **kwargs)
    detail = caught.value.detail
    assert detail is not None, caught.value.message
    code = detail.find(f"{{{NS}}}Fault/{{{NS}}}Code")
    return str(code.text)


async def test_wrong_password_then_lockout(mdm: MdmServer) -> None:
    before = await issued(mdm)
    challenges = await outstanding_challenges(mdm)
    bad = await mdm.client(password="wrong-password")
    assert await fault_code(mdm, bad, "Authenticate") == "AuthenticationFailed"
    for op in ("Enroll", "RequestScepChallenge", "Enroll"):
        assert await fault_code(mdm, bad, op, DigitalId=DIGITAL_ID, Variables=variables(**DEVICE)) \
            == "AuthenticationFailed"
    # the fifth failure locks the credential (and says so)
    assert await fault_code(mdm, bad, "Authenticate") in ("AuthenticationFailed", "LockedOut")
    good = await mdm.client()
    assert await fault_code(mdm, good, "Enroll", DigitalId=DIGITAL_ID, Variables=variables(**DEVICE)) == "LockedOut"
    assert await fault_code(mdm, good, "RequestScepChallenge", DigitalId=DIGITAL_ID,
                            Variables=variables(**DEVICE)) == "LockedOut"
    assert await issued(mdm) == before
    assert await outstanding_challenges(mdm) == challenges


@pytest.mark.parametrize("values, code", [
    ({"deviceName": "ipad-7"}, "MissingVariable"),
    ({**DEVICE, "shoeSize": "9"}, "UnknownVariable"),
    ({"deviceName": "x,O=Evil", "igusername": "alice"}, "InvalidVariableValue"),
    ({"deviceName": "x+UID=admin", "igusername": "alice"}, "InvalidVariableValue"),
    ({"deviceName": "x", "igusername": "a=b"}, "InvalidVariableValue"),
    ({"deviceName": "x;y", "igusername": 'say "hi"'}, "InvalidVariableValue"),
])
async def test_variables_missing_unknown_or_carrying_injection(mdm: MdmServer, values: dict[str, str],
                                                               code: str) -> None:
    before, challenges = await issued(mdm), await outstanding_challenges(mdm)
    svc = await mdm.client()
    for op in ("Enroll", "RequestScepChallenge"):
        assert await fault_code(mdm, svc, op, DigitalId=DIGITAL_ID, Variables=variables(**values)) == code
    assert await issued(mdm) == before
    assert await outstanding_challenges(mdm) == challenges


async def test_the_challenge_count_sees_a_challenge(mdm: MdmServer) -> None:
    """Control for the counts above: a granted RequestScepChallenge is one more."""
    before = await outstanding_challenges(mdm)
    await mdm.call(await mdm.client(), "RequestScepChallenge", DigitalId=DIGITAL_ID, Variables=variables(**DEVICE))
    assert await outstanding_challenges(mdm) == before + 1


async def test_unknown_digital_id_and_device_keys_only(mdm: MdmServer) -> None:
    before, challenges = await issued(mdm), await outstanding_challenges(mdm)
    svc = await mdm.client()
    for op in ("Enroll", "RequestScepChallenge"):
        assert await fault_code(mdm, svc, op, DigitalId="nope", Variables=variables(**DEVICE)) == "UnknownDigitalId"
    assert await outstanding_challenges(mdm) == challenges
    await add_digital_id(mdm.gw.door("mdm"), "mdm", "scep-only",
                         {"profile": "mdmws-digital-signature-client-auth", "rdn_format": "CN=<deviceName>"},
                         actor="test")
    assert await fault_code(mdm, svc, "Enroll", DigitalId="scep-only", Variables=variables(deviceName="d")) \
        == "ServerKeyGenerationNotAllowed"
    assert await fault_code(mdm, svc, "Enroll", DigitalId=DIGITAL_ID, Variables=variables(**DEVICE),
                            Password="short") == "InvalidPassword"
    assert await issued(mdm) == before


async def test_another_configurations_certificate_is_not_found(mdm: MdmServer) -> None:
    door = mdm.gw.door("mdm")
    await create_configuration(door, "other", "issuing", "ivanti", actor="test")
    await add_digital_id(door, "other", "dev", {"profile": "mdmws-p12-digital-signature", "rdn_format": "CN=<udid>"},
                         actor="test")
    other = await add_credential(door, "other", "ivanti-user", actor="test")
    theirs = await mdm.client("ivanti-user", other.secret, config="other")
    cert = await mdm.call(theirs, "Enroll", DigitalId="dev", Variables=variables(udid="u-1"))
    mine = await mdm.client()
    for op in ("Revoke", "GetCertificateStatus", "Renew"):
        assert await fault_code(mdm, mine, op, SerialNumber=cert.SerialNumber) == "CertificateNotFound"
    assert (await door.find_certificate(cert.SerialNumber)).status == "valid"
    # and the dev credential is no credential of the other configuration
    assert await fault_code(mdm, await mdm.client(config="other"), "Authenticate") == "AuthenticationFailed"


def _post(mdm: MdmServer, body: bytes, version: str = S11, auth: bool = True) -> Any:
    session = mdm.session(mdm.dev["username"], mdm.dev["password"]) if auth else mdm.session()
    ctype = "text/xml; charset=utf-8" if version == S11 else "application/soap+xml; charset=utf-8"
    return session.post(f"{mdm.info.https}/mdmws/mdm/AdminService", data=body, headers={"Content-Type": ctype},
                        timeout=60)


def _enroll(header: bytes = b"", ns: str = S11) -> bytes:
    return (f'<s:Envelope xmlns:s="{ns}">'.encode() + header + b'<s:Body><m:Enroll xmlns:m="' + NS.encode()
            + b'"><m:DigitalId>dev-device</m:DigitalId><m:Variables><m:Variable><m:Name>deviceName</m:Name>'
            b'<m:Value>&e;</m:Value></m:Variable><m:Variable><m:Name>igusername</m:Name><m:Value>a</m:Value>'
            b'</m:Variable></m:Variables></m:Enroll></s:Body></s:Envelope>')


HOSTILE = {
    "malformed": (b"<s:Envelope xmlns:s='" + S11.encode() + b"'><s:Body><unclosed>", "MalformedMessage"),
    "xxe": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + _enroll(),
            "MalformedMessage"),
    "billion-laughs": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;'
                       b'&a;&a;&a;&a;&a;"><!ENTITY e "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>' + _enroll(),
                       "MalformedMessage"),
    "too-large": (b"<s:Envelope xmlns:s='" + S11.encode() + b"'><s:Body>" + b" " * (70 * 1024) + b"</s:Body>"
                  b"</s:Envelope>", "MalformedMessage"),
    "not-soap": (b"<Envelope><Body/></Envelope>", "MalformedMessage"),
    "unknown-operation": (b"<s:Envelope xmlns:s='" + S11.encode() + b"'><s:Body><m:Mint xmlns:m='" + NS.encode()
                          + b"'/></s:Body></s:Envelope>", "UnknownOperation"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_malformed_and_hostile_xml_is_a_soap_fault(mdm: MdmServer, name: str) -> None:
    body, code = HOSTILE[name]
    before = await issued(mdm)
    r = await asyncio.to_thread(_post, mdm, body)
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("text/xml"), r.text[:300]
    assert "faultcode" in r.text and f"<m:Code>{code}</m:Code>" in r.text, r.text[:500]
    assert "root:" not in r.text and "Traceback" not in r.text
    assert await issued(mdm) == before


async def test_soap12_faults_are_sender_400(mdm: MdmServer) -> None:
    body = (f'<s:Envelope xmlns:s="{S12}"><s:Body><m:Mint xmlns:m="{NS}"/></s:Body></s:Envelope>').encode()
    r = await asyncio.to_thread(_post, mdm, body, S12)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/soap+xml")
    assert "s:Sender" in r.text and "m:UnknownOperation" in r.text


async def test_password_digest_no_credentials_and_routes(mdm: MdmServer) -> None:
    wsse = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd")
    digest = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
    header = (f'<s:Header><w:Security xmlns:w="{wsse}"><w:UsernameToken><w:Username>mdm-dev</w:Username>'
              f'<w:Password Type="{digest}">abc</w:Password></w:UsernameToken></w:Security></s:Header>').encode()
    body = (f'<s:Envelope xmlns:s="{S11}">'.encode() + header
            + f'<s:Body><m:Authenticate xmlns:m="{NS}"/></s:Body></s:Envelope>'.encode())
    r = await asyncio.to_thread(_post, mdm, body, S11, False)
    assert r.status_code == 500 and "<m:Code>AuthenticationFailed</m:Code>" in r.text and "PasswordDigest" in r.text
    bare = f'<s:Envelope xmlns:s="{S11}"><s:Body><m:Authenticate xmlns:m="{NS}"/></s:Body></s:Envelope>'.encode()
    r = await asyncio.to_thread(_post, mdm, bare, S11, False)
    assert "<m:Code>AuthenticationFailed</m:Code>" in r.text

    s = mdm.session()
    assert (await asyncio.to_thread(s.get, f"{mdm.info.https}/mdmws/mdm/AdminService", timeout=60)).status_code == 400
    assert (await asyncio.to_thread(s.get, f"{mdm.info.https}/mdmws/nope/AdminService?wsdl",
                                    timeout=60)).status_code == 404
    wsdl = await asyncio.to_thread(s.get, f"{mdm.info.https}/mdmws/mdm/AdminService?wsdl", timeout=60)
    assert wsdl.status_code == 200 and b"AdminServiceSoap12" in wsdl.content
    plain = await asyncio.to_thread(s.get, f"{mdm.info.http}/mdmws/mdm/AdminService?wsdl", timeout=60)
    assert plain.status_code == 404
