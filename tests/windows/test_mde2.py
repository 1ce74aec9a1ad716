"""Windows MDM enrollment (MS-MDE2) over a real socket: the Discovery service (GET probe,
Discover), then the DeviceEnrollmentToken RST on the CES answered with a provisioning
document whose certificate verifies with openssl against the gateway's CA.

The recorded requests are replayed as test_captures.py does: only their authentication is
changed (the dev UsernameToken user's name and password), and where a capture carries a
placeholder instead of a PKCS#10 (the MS-MDE2 4.3.1.1 example says "Insterted Here") a CSR
made here is inserted. Answers validate against the MS-MDE2 Discover schema (mde2.xsd, from
the spec's appendix), the MS-WSTEP RSTRC schema, and our provisioning-document schema
(mde2-provisioning.xsd: the spec has examples only), plus explicit checks of which store
holds which certificate.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from conformance.harness import SHARED_CAPTURES, require_client
from gateway.store.records import CertificateFilter
from protocols.windows import mde2, wstep
from protocols.windows.mde2 import thumbprint

from .helpers import SOAP12, WSA, WSSE, SoapReply, WindowsServer, assert_valid, capture
from .test_captures import with_credentials
from .wstep_helpers import username_token

DISCOVER_CAPTURES = sorted((SHARED_CAPTURES / "mde2").glob("*/*Discover-request*.xml"))
EXPECTED_VERSIONS = {"4.1.1.1-Discover-request-Federated.xml": "4.0",  # asks 5.0: 4.0 is our highest
                     "4.1.1.3-Discover-request-OnPremise.xml": "3.0",
                     "1-Discover-request.xml": "4.0"}
WIN10 = ("mde2", "win10-19043-capture-marcosd4h")
ROOT_DISCOVERY = "/EnrollmentServer/Discovery.svc"
MDE2_NS = mde2.NS


async def issued_count(windows: WindowsServer) -> int:
    async with windows.gw.store.read() as q:
        return await q.certificates.count(CertificateFilter(protocol_config="windows"))


def discover_body(policies: tuple[str, ...] = ("OnPremise",), version: str = "4.0", *,
                  extra: str = "", message_id: str = "urn:uuid:5e0e4bd9-3c8c-4bd0-a6c6-5c1f1e7b3a10") -> bytes:
    """A Discover as the Windows 10 client shapes it (1-Discover-request.xml)."""
    items = "".join(f"<AuthPolicy>{p}</AuthPolicy>" for p in policies)
    return f"""<s:Envelope xmlns:a="{WSA}" xmlns:s="{SOAP12}"><s:Header>
<a:Action s:mustUnderstand="1">{mde2.ACTION_DISCOVER}</a:Action><a:MessageID>{message_id}</a:MessageID>
<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
</s:Header><s:Body><Discover xmlns="{MDE2_NS}"><request xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
<EmailAddress>demo@example.com</EmailAddress><RequestVersion>{version}</RequestVersion>
<DeviceType>CIMClient_Windows</DeviceType><ApplicationVersion>10.0.19043.2364</ApplicationVersion>
<OSEdition>72</OSEdition><AuthPolicies>{items}</AuthPolicies>{extra}</request></Discover></s:Body></s:Envelope>""".encode()


def discover_result(rep: SoapReply) -> dict[str, str]:
    """The DiscoverResult of a 200 answer, validated against the MS-MDE2 schema."""
    assert rep.status == 200, (rep.status, rep.body[:800])
    assert rep.action == mde2.ACTION_DISCOVER_RESPONSE
    assert rep.payload.tag == f"{{{MDE2_NS}}}DiscoverResponse"
    assert_valid(rep.payload, "mde2.xsd")
    result = rep.payload.find(f"{{{MDE2_NS}}}DiscoverResult")
    return {etree.QName(el).localname: el.text for el in result}


def mde2_fault(rep: SoapReply) -> dict[str, str]:
    """An MS-MDE2 fault: Subcode from 2.2.10, DeviceEnrollmentServiceError detail."""
    rep.assert_fault()
    detail = rep.payload.find(f"{{{SOAP12}}}Detail/{{{wstep.WSTEP}}}DeviceEnrollmentServiceError")
    assert detail is not None, rep.body[:800]
    return {"subcode": str(rep.fault_subcode), **{etree.QName(el).localname: el.text for el in detail}}


# --- Discovery ----------------------------------------------------------------------------------


def test_the_discover_captures_are_all_there() -> None:
    capture(*WIN10, "1-Discover-request.xml")
    assert {p.name for p in DISCOVER_CAPTURES} == set(EXPECTED_VERSIONS)


@pytest.mark.parametrize("path", DISCOVER_CAPTURES, ids=[p.name for p in DISCOVER_CAPTURES])
async def test_each_recorded_discover_gets_our_urls(windows: WindowsServer, path: Path) -> None:
    """Federated, OnPremise (spec) and the Windows 10 client's OnPremise+Federated: each is
    answered OnPremise (Federated is not served) with the configuration's CEP and CES."""
    data = path.read_bytes()
    rep = await windows.post(ROOT_DISCOVERY, data)
    result = discover_result(rep)
    assert result == {
        "AuthPolicy": "OnPremise",
        "EnrollmentVersion": EXPECTED_VERSIONS[path.name],
        "EnrollmentPolicyServiceUrl": windows.dev["cep"]["username"],
        "EnrollmentServiceUrl": windows.dev["ces"]["username"],
    }
    root = etree.fromstring(data)
    assert rep.relates_to == root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}MessageID").strip()


async def test_the_get_probe_answers_200(windows: WindowsServer) -> None:
    """What Windows sends first (0-Discover-GET-probe: GET, User-Agent ENROLLClient)."""
    import aiohttp

    head = capture(*WIN10, "0-Discover-GET-probe.http-headers.txt").read_text().splitlines()
    method, path, _ = head[0].split(" ")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line and not line.startswith("Host"))
    assert method == "GET"
    connector = aiohttp.TCPConnector(ssl=windows.ssl(), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in (path, windows.dev["mdm"]["discovery"], "/enrollmentserver/discovery.svc"):
            async with session.get(url if url.startswith("https") else windows.info.https + url,
                                   headers=headers) as resp:
                assert resp.status == 200, url
        async with session.get(windows.info.https + "/windows/nosuchconfig/discovery") as resp:
            assert resp.status == 404


async def test_info_names_the_discovery_urls(windows: WindowsServer) -> None:
    assert windows.dev["mdm"] == {"discovery": windows.info.https + "/windows/windows/discovery",
                                  "enterprise_enrollment": windows.info.https + ROOT_DISCOVERY}


async def test_the_gateway_discovery_path_answers_too(windows: WindowsServer) -> None:
    result = discover_result(await windows.post(windows.dev["mdm"]["discovery"], discover_body()))
    assert result["EnrollmentServiceUrl"] == windows.dev["ces"]["username"]


async def test_certificate_is_answered_when_it_is_all_the_client_asks_for(windows: WindowsServer) -> None:
    result = discover_result(await windows.post(ROOT_DISCOVERY, discover_body(("Certificate",), "5.0")))
    assert result["AuthPolicy"] == "Certificate"
    assert result["EnrollmentVersion"] == "4.0"
    assert result["EnrollmentPolicyServiceUrl"] == windows.dev["cep"]["certificate"]
    assert result["EnrollmentServiceUrl"] == windows.dev["ces"]["certificate"]


async def test_an_unsupported_auth_policy_is_a_fault(windows: WindowsServer) -> None:
    fault = mde2_fault(await windows.post(ROOT_DISCOVERY, discover_body(("Kerberos",))))
    assert fault["subcode"] == "MessageFormat"
    assert fault["ErrorType"] == "NotSupported"
    # a configuration offering only UsernameToken refuses a Certificate-only client
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings={**rec.settings, "auth": ["username"]})
    fault = mde2_fault(await windows.post(ROOT_DISCOVERY, discover_body(("Certificate",))))
    assert fault["ErrorType"] == "NotSupported"


async def test_a_version_older_than_3_is_refused(windows: WindowsServer) -> None:
    fault = mde2_fault(await windows.post(ROOT_DISCOVERY, discover_body(version="2.0")))
    assert fault["ErrorType"] == "DeviceNotSupported"


@pytest.mark.parametrize("body", [
    discover_body(()),  # no AuthPolicy
    discover_body(version="four"),
    discover_body().replace(b"<request ", b"<nothing ").replace(b"</request>", b"</nothing>"),
    discover_body().replace(f'<Discover xmlns="{MDE2_NS}">'.encode(), b'<Discover xmlns="urn:example:other">'),
    discover_body().replace(b"<EmailAddress>", b"<EmailAddress><x/>"),
], ids=["no-policy", "bad-version", "no-request", "foreign-namespace", "element-in-text"])
async def test_a_malformed_discover_is_a_message_format_fault(windows: WindowsServer, body: bytes) -> None:
    assert mde2_fault(await windows.post(ROOT_DISCOVERY, body))["subcode"] == "MessageFormat"


async def test_broken_envelopes_and_other_actions_are_soap_faults(windows: WindowsServer) -> None:
    (await windows.post(ROOT_DISCOVERY, b"<not-xml")).assert_fault()
    xxe = b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + discover_body().replace(
        b"demo@example.com", b"&x;")
    rep = await windows.post(ROOT_DISCOVERY, xxe)
    rep.assert_fault()
    assert b"root:" not in rep.body
    other = discover_body().replace(mde2.ACTION_DISCOVER.encode(), b"urn:example:Other")
    rep = await windows.post(ROOT_DISCOVERY, other)
    rep.assert_fault()
    assert rep.fault_subcode == "ActionNotSupported"


async def test_without_mdm_discovery_the_windows_path_is_not_served(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings={**rec.settings, "mdm_discovery": False})
    rep = await windows.post(ROOT_DISCOVERY, discover_body())
    assert rep.status == 404
    discover_result(await windows.post(windows.dev["mdm"]["discovery"], discover_body()))


# --- enrollment -----------------------------------------------------------------------------------


def device_csr(key: Any) -> x509.CertificateSigningRequest:
    """A CSR like Windows' MDM one (CN "<user GUID>!<device id>"), signed with SHA-256."""
    cn = "BA405A5D-B1C7-4737-81C8-8F379A!1E08C6E95D8BB843B1278FF45BC60CC6"
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()))


def b64(csr: x509.CertificateSigningRequest) -> str:
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()


def win10_rst(windows: WindowsServer, csr: x509.CertificateSigningRequest | None = None, *,
              password: str | None = None) -> bytes:
    """The Windows 10 RST capture with the dev credentials (and optionally another CSR)."""
    data = capture(*WIN10, "3-RST-request.xml").read_bytes()
    body = with_credentials(data, windows.dev["username"], password or windows.dev["password"])
    if csr is not None:
        body = re.sub(rb'(#PKCS10" EncodingType="[^"]+">)[^<]+', lambda m: m.group(1) + b64(csr).encode(), body)
    return body


def spec_rst(windows: WindowsServer, csr: x509.CertificateSigningRequest | None) -> bytes:
    """MS-MDE2 4.3.1.1: its Federated token replaced by the dev UsernameToken, its PKCS#10
    placeholder by ``csr`` (left as it is when ``None``)."""
    root = etree.fromstring(capture("mde2", "ms-mde2-spec", "4.3.1.1-RST-request-Federated.xml").read_bytes())
    security = root.find(f"{{{SOAP12}}}Header/{{{WSSE}}}Security")
    header = security.getparent()
    header.remove(security)
    token = username_token(windows.dev["username"], windows.dev["password"])
    header.append(etree.fromstring(token.replace("<o:Security ", f'<o:Security xmlns:s="{SOAP12}" ', 1)))
    if csr is not None:
        root.find(f".//{{{wstep.WST}}}RequestSecurityToken/{{{WSSE}}}BinarySecurityToken").text = b64(csr)
    return bytes(etree.tostring(root))


def provisioning(rep: SoapReply) -> Any:
    """The provisioning document of an MDE2 answer, every layer validated."""
    assert rep.status == 200, (rep.status, rep.body[:800])
    assert rep.action == wstep.ACTION_RSTRC
    assert_valid(rep.payload, "wstep-wstrust.xsd")
    rstr = rep.payload.find(f"{{{wstep.WST}}}RequestSecurityTokenResponse")
    assert rstr.findtext(f"{{{wstep.WST}}}TokenType") == mde2.DEVICE_ENROLLMENT_TOKEN
    assert rstr.findtext(f"{{{wstep.WSTEP}}}RequestID").isdigit()
    doc = etree.fromstring(mde2.read_provisioning(rep.payload))
    assert_valid(doc, "mde2-provisioning.xsd")
    return doc


def stores(doc: Any) -> dict[str, list[x509.Certificate]]:
    """``Root/System`` etc. -> the certificates placed there, each under its SHA-1 thumbprint."""
    out: dict[str, list[x509.Certificate]] = {}
    for store in doc.iterfind("characteristic[@type='CertificateStore']/characteristic"):
        for location in store.iterfind("characteristic"):
            for node in location.iterfind("characteristic"):
                parm = node.find("parm[@name='EncodedCertificate']")
                if parm is None:
                    continue
                cert = x509.load_der_x509_certificate(base64.b64decode(parm.get("value")))
                assert node.get("type") == thumbprint(cert)
                out.setdefault(f"{store.get('type')}/{location.get('type')}", []).append(cert)
    return out


def assert_verifies(windows: WindowsServer, found: dict[str, list[x509.Certificate]], leaf: x509.Certificate) -> None:
    require_client("openssl")
    from tests.support import openssl, write_pem

    root = write_pem(windows.tmp / "mdm-root.pem", *found["Root/System"])
    chain = write_pem(windows.tmp / "mdm-ca.pem", *found.get("CA/System", []))
    cert = write_pem(windows.tmp / "mdm-leaf.pem", leaf)
    out = openssl("verify", "-CAfile", str(root), "-untrusted", str(chain), str(cert)).stdout
    assert out.strip().endswith(": OK"), out


async def test_the_windows_10_rst_gets_a_provisioning_document(windows: WindowsServer) -> None:
    """The Windows 10 capture as recorded, but with a SHA-256 CSR of our own key in it: the
    CA root lands in Root/System, the issuing CA in CA/System, the device certificate (our
    key, the template's client authentication) in My/User (EnrollmentType Full), and no
    OMA-DM account is configured, so no w7 APPLICATION node."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rep = await windows.post(windows.dev["ces"]["username"], win10_rst(windows, device_csr(key)))
    doc = provisioning(rep)
    found = stores(doc)
    assert set(found) == {"Root/System", "CA/System", "My/User"}
    leaf = found["My/User"][0]
    assert leaf.public_key() == key.public_key()
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in leaf.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert_verifies(windows, found, leaf)
    assert doc.find("characteristic[@type='APPLICATION']") is None
    renew = doc.find(".//characteristic[@type='WSTEP']/characteristic[@type='Renew']")
    assert renew.find("parm[@name='RenewPeriod']").get("value") == "42"  # the template's P42D
    assert await issued_count(windows) == 1


async def test_the_windows_10_rst_capture_as_recorded_is_issued(windows: WindowsServer) -> None:
    """The real Windows CSR (SHA-1 via the OIW OID, a PrintableString CN with "!" and a NUL)."""
    rep = await windows.post(windows.dev["ces"]["username"], win10_rst(windows))
    found = stores(provisioning(rep))
    csr = capture(*WIN10, "3-RST-request.bst.p10.der").read_bytes()
    assert found["My/User"][0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) in csr
    assert_verifies(windows, found, found["My/User"][0])


async def test_the_spec_rst_with_a_csr_inserted_gets_a_provisioning_document(windows: WindowsServer) -> None:
    """MS-MDE2 4.3.1.1 (EnrollmentType Full, 40 context items, a RequestVersion 5.0 item)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    found = stores(provisioning(await windows.post(windows.dev["ces"]["username"], spec_rst(windows, device_csr(key)))))
    assert found["My/User"][0].public_key() == key.public_key()
    assert_verifies(windows, found, found["My/User"][0])


async def test_the_spec_rst_placeholder_is_a_message_format_fault(windows: WindowsServer) -> None:
    fault = mde2_fault(await windows.post(windows.dev["ces"]["username"], spec_rst(windows, None)))
    assert fault["subcode"] == "MessageFormat"
    assert await issued_count(windows) == 0


async def test_a_device_enrollment_goes_to_my_system_and_names_the_dm_server(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings={
        **rec.settings, "mdm_server_url": "https://dm.example.com/ManagementServer/MDM.svc",
        "mdm_provider_id": "ExampleMDM"})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = win10_rst(windows, device_csr(key)).replace(b"<ac:Value>Full</ac:Value>", b"<ac:Value>Device</ac:Value>")
    doc = provisioning(await windows.post(windows.dev["ces"]["username"], body))
    assert "My/System" in stores(doc) and "My/User" not in stores(doc)
    app = doc.find("characteristic[@type='APPLICATION']")
    parms = {p.get("name"): p.get("value") for p in app.iterfind("parm")}
    assert parms["APPID"] == "w7"
    assert parms["ADDR"] == "https://dm.example.com/ManagementServer/MDM.svc"
    assert parms["PROVIDER-ID"] == "ExampleMDM"
    assert parms["SSLCLIENTCERTSEARCHCRITERIA"].endswith("&Stores=My%5CSystem")


async def test_the_recorded_password_is_an_authentication_fault(windows: WindowsServer) -> None:
    """The capture's own demo@pocmdmserver.com / demo: not a user here; nothing issued."""
    body = capture(*WIN10, "3-RST-request.xml").read_bytes()
    fault = mde2_fault(await windows.post(windows.dev["ces"]["username"], body))
    assert fault["subcode"] == "Authentication"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = win10_rst(windows, device_csr(key), password="not-the-password")
    assert mde2_fault(await windows.post(windows.dev["ces"]["username"], wrong))["subcode"] == "Authentication"
    assert await issued_count(windows) == 0


async def test_a_template_the_caller_may_not_use_is_an_authorization_fault(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    templates = [dict(t, enroll=["somebody-else"]) for t in rec.settings["templates"]]
    await door.update_configuration("windows", settings={**rec.settings, "templates": templates})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fault = mde2_fault(await windows.post(windows.dev["ces"]["username"], win10_rst(windows, device_csr(key))))
    assert fault["subcode"] == "Authorization"
    assert await issued_count(windows) == 0


async def test_an_unknown_request_type_is_refused(windows: WindowsServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = win10_rst(windows, device_csr(key)).replace(b"200512/Issue", b"200512/Cancel")
    assert mde2_fault(await windows.post(windows.dev["ces"]["username"], body))["subcode"] == "MessageFormat"
    assert await issued_count(windows) == 0


async def test_a_robo_renewal_signed_by_the_old_certificate_gets_a_new_one(windows: WindowsServer) -> None:
    """MS-MDE2 3.5: RequestType Renew, a PKCS#7 over the new PKCS#10 signed with the device
    certificate; the new certificate keeps the old one's subject."""
    from .wstep_helpers import pkcs7_renewal

    old_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    first = stores(provisioning(await windows.post(windows.dev["ces"]["username"],
                                                   win10_rst(windows, device_csr(old_key)))))
    old = first["My/User"][0]
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    renewal = pkcs7_renewal(device_csr(new_key), old, old_key)
    body = win10_rst(windows, device_csr(new_key))
    body = re.sub(rb'ValueType="[^"]+#PKCS10" EncodingType="([^"]+)">[^<]+',
                  lambda m: (f'ValueType="{wstep.VALUE_PKCS7}" EncodingType="{m.group(1).decode()}">'
                             + base64.b64encode(renewal).decode()).encode(), body)
    body = body.replace(b"200512/Issue", b"200512/Renew")
    found = stores(provisioning(await windows.post(windows.dev["ces"]["username"], body)))
    new = found["My/User"][0]
    assert new.public_key() == new_key.public_key() and new.subject == old.subject and new.serial_number != old.serial_number
    assert await issued_count(windows) == 2


@pytest.mark.parametrize("changes", [{"mdm_template": "NoSuchTemplate"}, {"mdm_server_url": "http://dm.example.com/"},
                                     {"mdm_discovery": "yes"}, {"mdm_provider_id": ""}],
                         ids=["template", "plain-http", "not-bool", "empty-provider"])
def test_bad_mdm_settings_are_refused_naming_the_key(changes: dict[str, Any]) -> None:
    from gateway.errors import ConfigError
    from protocols.windows.adapter import dev_settings
    from protocols.windows.settings import parse_settings

    with pytest.raises(ConfigError, match=next(iter(changes))):
        parse_settings({**dev_settings("windows", "CA"), **changes}, "windows", "issuing-rsa",
                       ["windows-user", "windows-computer"])


@pytest.mark.parametrize(("parts", "xsd"), [
    (("mde2", "ms-mde2-spec", "4.1.2.1-DiscoverResponse-Federated.xml"), "mde2.xsd"),
    (("mde2", "ms-mde2-spec", "4.1.2.2-DiscoverResponse-Certificate.xml"), "mde2.xsd"),
    ((*WIN10, "1-DiscoverResponse-server.xml"), "mde2.xsd"),
    (("mde2", "ms-mde2-spec", "4.3.2-RSTRC-response.xml"), "wstep-wstrust.xsd"),
    ((*WIN10, "3-RSTRC-response-server.xml"), "wstep-wstrust.xsd"),
], ids=lambda v: v[-1] if isinstance(v, tuple) else v)
def test_the_recorded_mdm_answers_validate_against_our_schemas(parts: tuple[str, ...], xsd: str) -> None:
    """The schemas our answers are checked with accept what Microsoft's servers send (the
    4.3.2 example is SOAP 1.1: only its Body's content is checked)."""
    root = etree.parse(str(capture(*parts))).getroot()
    body = root.find(f"{{{SOAP12}}}Body")
    if body is None:
        body = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    assert_valid(body[0], xsd)
