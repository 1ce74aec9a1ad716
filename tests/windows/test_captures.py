"""Every recorded GetPolicies request (MS-XCEP spec, MS-MDE2 spec, a real Windows 10 MDM
client) replayed against the real server: each gets a GetPoliciesResponse that validates
against the MS-XCEP schema. The recorded Issue requests' SHA-1 CSRs (MS-WSTEP 4.1.1.1, the
Windows 10 MDM client's) get certificates that openssl verifies against the gateway's CA.

The captures carry no usable credentials (the MS-XCEP example elides them, the MDM ones are
someone else's), so each is replayed as it is except for its authentication:

- a capture with a UsernameToken goes to the UsernamePassword endpoint with the dev
  user's name and password put into its Username and Password (nothing else changes,
  not even its stale ``u:Timestamp``);
- one without (the MS-MDE2 Federated example carries an MDM BinarySecurityToken) goes to
  the Certificate endpoint over TLS with a client certificate from the gateway's CA; its
  security header is left as it is (that endpoint does not read it).

The MS-XCEP capture is sent to the exact path it names in ``a:To`` (AD CS's, lower case);
the MDM ones name MDM enrollment paths this package does not serve, so they go to the
gateway's own CEP paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from conformance.harness import SHARED_CAPTURES
from gateway.door import CsrPolicy
from gateway.errors import GatewayError
from gateway.store.records import CertificateFilter
from protocols.windows import ces, cmc, wstep
from protocols.windows.adapter import dev_settings
from protocols.windows.settings import parse_settings
from tests.support import openssl, write_pem

from .helpers import SOAP12, WSA, WSSE, XCEP, WindowsServer, assert_valid, capture
from .wstep_helpers import enrollment_fault, error_code, rst_body, rstr

CAPTURES = sorted([*(SHARED_CAPTURES / "xcep-wstep" / "ms-xcep").glob("*GetPolicies*request*.xml"),
                   *(SHARED_CAPTURES / "mde2").glob("*/*GetPolicies*request*.xml")])
EXPECTED = {"4.1.1.1-GetPolicies-initial-request.xml", "2-GetPolicies-request.xml",
            "4.2.1.1-GetPolicies-request-Federated.xml", "4.2.1.3-GetPolicies-request-OnPremise.xml"}


def test_the_captures_are_all_there() -> None:
    capture("xcep-wstep", "ms-xcep")
    assert {p.name for p in CAPTURES} >= EXPECTED


def with_credentials(data: bytes, username: str, password: str) -> bytes:
    root = etree.fromstring(data)
    for local, value in (("Username", username), ("Password", password)):
        for el in root.iter(f"{{{WSSE}}}{local}"):
            for child in list(el):
                el.remove(child)  # the spec's <!--Removed-->
            el.text = value
    return etree.tostring(root)


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
async def test_each_recorded_get_policies_gets_a_schema_valid_answer(windows: WindowsServer, path: Path) -> None:
    data = path.read_bytes()
    root = etree.fromstring(data)
    has_username_token = root.find(f".//{{{WSSE}}}UsernameToken") is not None
    to = root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}To").strip()
    if has_username_token:
        body = with_credentials(data, windows.dev["username"], windows.dev["password"])
        target = urlsplit(to).path
        url = target if target.lower().endswith("/service.svc/cep") else windows.dev["cep"]["username"]
        rep = await windows.post(url, body)
    else:
        cert = await windows.client_cert("replay.example.com")
        rep = await windows.post(windows.dev["cep"]["certificate"], data, cert=cert)
    assert rep.status == 200, rep.body[:600]
    assert rep.action == f"{XCEP}/IPolicy/GetPoliciesResponse"
    assert rep.relates_to == root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}MessageID").strip()
    assert rep.payload.tag == f"{{{XCEP}}}GetPoliciesResponse"
    assert_valid(rep.payload)
    names = {p.findtext(f"{{{XCEP}}}attributes/{{{XCEP}}}commonName")
             for p in rep.payload.iter(f"{{{XCEP}}}policy")}
    assert names == {"GatewayUser", "GatewayComputer"}


async def test_a_capture_without_a_username_token_is_refused_on_the_username_endpoint(windows: WindowsServer) -> None:
    data = capture("mde2", "ms-mde2-spec", "4.2.1.1-GetPolicies-request-Federated.xml").read_bytes()
    rep = await windows.post(windows.dev["cep"]["username"], data)
    rep.assert_fault()
    assert rep.fault_subcode == "FailedAuthentication"


async def test_a_capture_with_the_recorded_password_is_refused(windows: WindowsServer) -> None:
    data = capture("mde2", "win10-19043-capture-marcosd4h", "2-GetPolicies-request.xml").read_bytes()
    rep = await windows.post(windows.dev["cep"]["username"], data)  # demo@pocmdmserver.com / demo
    rep.assert_fault()
    assert rep.fault_subcode == "FailedAuthentication"


# --- Issue requests: the SHA-1 CSRs Windows sends ----------------------------------------------

WSTEP_ISSUE = ("xcep-wstep", "ms-wstep", "4.1.1.1-RST-Issue-PKCS10-request.xml")
MDM_CSR = ("mde2", "win10-19043-capture-marcosd4h", "3-RST-request.bst.p10.der")
MDM_CN = "BA405A5D-B1C7-4737-81C8-8F379A!1E08C6E95D8BB843B1278FF45BC60CC6"


async def with_settings(windows: WindowsServer, **changes: Any) -> None:
    """The dev configuration with AD CS's ``User`` template (what the MS-WSTEP example asks
    for by its v1 template name; subject from the directory, as AD CS builds it) and ``changes``."""
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    user = {"name": "User", "profile": "windows-user", "oid": "1.3.6.1.4.1.311.21.8.99.1", "schema": 1,
            "subject": "directory"}
    await door.update_configuration("windows", settings={
        **rec.settings, "templates": [*rec.settings["templates"], user], **changes})


async def issued(windows: WindowsServer) -> int:
    async with windows.gw.store.read() as q:
        return await q.certificates.count(CertificateFilter(protocol_config="windows"))


async def verify_with_openssl(windows: WindowsServer, cert: x509.Certificate) -> None:
    door = windows.gw.door("windows")
    chain = await door.chain((await door.configuration("windows")).ca_id)
    root = write_pem(windows.tmp / "root.pem", chain[-1])
    untrusted = write_pem(windows.tmp / "untrusted.pem", *chain[:-1])
    leaf = write_pem(windows.tmp / "leaf.pem", cert)
    out = openssl("verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf))
    assert out.stdout.strip().endswith(": OK"), out.stdout


def spec_issue_request(windows: WindowsServer) -> bytes:
    """MS-WSTEP 4.1.1.1 verbatim, plus the dev user's UsernameToken (it carries none)."""
    text = capture(*WSTEP_ISSUE).read_bytes()
    return text.replace(b"</a:ReplyTo>", b"</a:ReplyTo>" + windows.security().encode())


async def test_the_ms_wstep_issue_request_gets_a_certificate(windows: WindowsServer) -> None:
    """Its PKCS#10 is signed sha1WithRSAEncryption: the Windows configuration accepts that
    (accept_sha1_csr_signatures), the certificate is ours, signed with SHA-256."""
    await with_settings(windows)
    rep = await windows.post(windows.dev["ces"]["username"], spec_issue_request(windows))
    answer = rstr(rep)  # schema-valid RSTRC
    assert rep.relates_to == "urn:uuid:b5d1a601-5091-4a7d-b34b-5204c18b5919"
    assert answer.disposition == wstep.ISSUED and answer.certificate is not None
    cert = x509.load_der_x509_certificate(answer.certificate)
    csr = x509.load_der_x509_csr(capture(*WSTEP_ISSUE[:2], "4.1.1.1-RST-Issue-PKCS10-request.bst.p10.der").read_bytes())
    assert cert.public_key().public_numbers() == csr.public_key().public_numbers()  # type: ignore[union-attr]
    assert cert.subject.rfc4514_string() == f"CN={windows.dev['username']}"  # the directory (caller), not the CSR
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert answer.cmc_response is not None and cert in cmc.read_pki_response(answer.cmc_response)[1]
    await verify_with_openssl(windows, cert)
    assert await issued(windows) == 1


async def test_with_sha1_turned_off_the_ms_wstep_request_is_refused(windows: WindowsServer) -> None:
    await with_settings(windows, accept_sha1_csr_signatures=False)
    detail = enrollment_fault(await windows.post(windows.dev["ces"]["username"], spec_issue_request(windows)))
    assert detail["ErrorCode"] == error_code(wstep.NTE_BAD_SIGNATURE) and detail["InvalidRequest"] == "true"
    assert await issued(windows) == 0


async def test_a_held_sha1_request_is_issued_when_approved(windows: WindowsServer) -> None:
    """The configuration's CSR policy travels with the held request to the approval."""
    await with_settings(windows, approval="manual")
    url = windows.dev["ces"]["username"]
    answer = rstr(await windows.post(url, spec_issue_request(windows)))
    assert answer.disposition == wstep.PENDING and answer.request_id is not None
    door = windows.gw.door("windows")
    (row,) = await windows.table_rows(ces.requests)
    await door.approve(row.request_id, "operator")
    done = rstr(await windows.post(url, rst_body(request_type=wstep.QUERY_TOKEN_STATUS,
                                                 request_id=answer.request_id, security=windows.security())))
    assert done.disposition == wstep.ISSUED and done.certificate is not None
    await verify_with_openssl(windows, x509.load_der_x509_certificate(done.certificate))


def test_the_windows_10_mdm_csr_passes_proof_of_possession_with_the_windows_policy() -> None:
    """OIW sha1WithRSASignature, a PrintableString CN with ``!`` and a trailing NUL: refused
    by the strict core rule, read and verified under a Windows configuration's policy."""
    data = capture(*MDM_CSR).read_bytes()
    with pytest.raises(GatewayError):
        cmc.parse_request_token(data)
    policy = parse_settings(dev_settings("windows", "CA"), "windows", "issuing-rsa",
                            ["windows-user", "windows-computer"]).csr_policy
    assert policy == CsrPolicy(sha1_signatures=True, legacy_strings=True)
    token = cmc.parse_request_token(data, policy)
    assert token.form == "pkcs10" and token.csr.signature_algorithm_oid.dotted_string == "1.3.14.3.2.29"
    assert token.csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == MDM_CN + "\x00"
    with pytest.raises(GatewayError):  # the SHA-1 setting still decides
        cmc.parse_request_token(data, CsrPolicy(legacy_strings=True))


async def test_the_windows_10_mdm_csr_is_issued_over_wstep_without_its_nul(windows: WindowsServer) -> None:
    """The MDM client's CSR as a plain MS-WSTEP Issue (the MDM RST itself asks for MS-MDE2's
    DeviceEnrollmentToken, answered by the MDE2 endpoint): a certificate whose CN is the
    client's, without the C string's NUL, verifying against the gateway's CA."""
    data = capture(*MDM_CSR).read_bytes()
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=data, security=windows.security(), value_type=wstep.WSTEP + "#PKCS10",
        context={"CertificateTemplate": "GatewayComputer"}))
    answer = rstr(rep)
    assert answer.disposition == wstep.ISSUED and answer.certificate is not None
    cert = x509.load_der_x509_certificate(answer.certificate)
    assert [a.value for a in cert.subject] == [MDM_CN]
    assert "\\00" not in cert.subject.rfc4514_string()
    await verify_with_openssl(windows, cert)
    assert await issued(windows) == 1


async def test_a_request_subject_with_other_control_characters_is_refused(windows: WindowsServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad\x01name")]))
           .sign(key, hashes.SHA256()))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=csr.public_bytes(serialization.Encoding.DER), security=windows.security(),
        context={"CertificateTemplate": "GatewayComputer"}))
    assert enrollment_fault(rep)["ErrorCode"] == error_code(wstep.CERTSRV_E_BAD_REQUESTSUBJECT)
    assert await issued(windows) == 0
