"""MS-WSTEP enrollment (CES) over a real socket: Issue with a PKCS#10, a CMC request and a
PKCS#7 renewal, pending + QueryTokenStatus, KET, and the refusals; every answer validates
against the MS-WSTEP schema, and every refusal leaves nothing issued."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from gateway.door import RevocationReason, serial_hex
from gateway.store.records import CertificateFilter
from protocols.windows import ces, cmc, wstep
from protocols.windows.settings import WindowsSettings
from protocols.windows.templates import TEMPLATE_INFORMATION

from .helpers import ClientCredential, WindowsServer, capture
from .wstep_helpers import (
    cmc_request,
    enrollment_fault,
    error_code,
    pkcs7_renewal,
    rst_body,
    rstr,
    self_signed,
    windows_csr,
)


async def settings(windows: WindowsServer) -> WindowsSettings:
    return WindowsSettings.of(await windows.gw.door("windows").configuration("windows"))


async def user_oid(windows: WindowsServer) -> str:
    template = (await settings(windows)).template("GatewayUser")
    assert template is not None
    return template.oid


async def issued_count(windows: WindowsServer) -> int:
    async with windows.gw.store.read() as q:
        return await q.certificates.count(CertificateFilter(protocol_config="windows"))


async def enroll_user(windows: WindowsServer, cn: str = "alice") -> tuple[x509.Certificate, Any, wstep.Rstr]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = windows_csr(key, cn, template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["username"],
                             rst_body(token=csr.public_bytes(serialization.Encoding.DER), security=windows.security()))
    answer = rstr(rep)
    assert answer.certificate is not None
    return x509.load_der_x509_certificate(answer.certificate), key, answer


def credential(windows: WindowsServer, cert: x509.Certificate, key: Any, name: str) -> ClientCredential:
    cert_path, key_path = windows.tmp / f"{name}.pem", windows.tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ClientCredential(cert, key, cert_path, key_path)


# --- Issue -------------------------------------------------------------------------------------


async def test_pkcs10_over_username_token_issues_with_the_cmc_response_and_chain(windows: WindowsServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = windows_csr(key, "alice", template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=csr.public_bytes(serialization.Encoding.DER), security=windows.security(), message_id="urn:uuid:42"))
    answer = rstr(rep)
    assert rep.relates_to == "urn:uuid:42"
    assert answer.disposition == wstep.ISSUED and answer.request_id is not None and answer.request_id.isdigit()
    assert answer.certificate is not None and answer.cmc_response is not None
    cert = x509.load_der_x509_certificate(answer.certificate)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    statuses, certs = cmc.read_pki_response(answer.cmc_response)
    assert statuses == [(cmc.SUCCESS, [1], wstep.ISSUED)]
    chain = await windows.gw.door("windows").chain((await windows.gw.door("windows").configuration("windows")).ca_id)
    assert cert in certs and set(chain) <= set(certs)
    # the CMC response is signed by the HTTPS listener's key, whose certificate it carries
    info = cmc.ecms.load_content_info(answer.cmc_response)
    signer_info = info["content"]["signer_infos"][0]
    tls = x509.load_pem_x509_certificates((windows.info.data_dir / "tls" / "server.pem").read_bytes())[0]
    assert tls in certs and cmc.ecms.matches_identifier(tls, signer_info["sid"])
    cmc.ecms.verify_signer_info(signer_info, tls, bytes(info["content"]["encap_content_info"]["content"].native))
    rows = await windows.table_rows(ces.requests)
    assert [(r.id, r.serial, r.template) for r in rows] == [
        (int(answer.request_id), serial_hex(cert.serial_number), "GatewayUser")]


async def test_cmc_request_on_the_adcs_path_with_the_template_in_the_context(windows: WindowsServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = windows_csr(key, "bob")
    url = windows.dev["adcs"]["ces"]["username"]
    rep = await windows.post(url.replace("_CES_", "_ces_").replace("/CES", "/ces"), rst_body(
        token=cmc_request(csr, key, body_part_id=5), security=windows.security(),
        context={"CertificateTemplate": "GatewayUser"}))
    answer = rstr(rep)
    assert answer.disposition == wstep.ISSUED and answer.cmc_response is not None
    statuses, _ = cmc.read_pki_response(answer.cmc_response)
    assert statuses[0][:2] == (cmc.SUCCESS, [5])


async def test_issued_certificate_carries_the_template_information_extension(windows: WindowsServer) -> None:
    """What Windows reads to know a certificate's template (MS-WCCE 2.2.2.7.7.2): the OID
    and revision of the template the request was issued under."""
    cert, _, _ = await enroll_user(windows)
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(TEMPLATE_INFORMATION))
    template = (await settings(windows)).template("GatewayUser")
    assert template is not None and isinstance(ext.value, x509.MSCertificateTemplate) and not ext.critical
    assert (ext.value.template_id.dotted_string, ext.value.major_version, ext.value.minor_version) == (
        template.oid, template.major_revision, template.minor_revision)


async def test_a_directory_template_ignores_the_requested_subject_and_names(windows: WindowsServer) -> None:
    """``subject = directory`` (no ENROLLEE_SUPPLIES_SUBJECT): whatever the CSR asks for, the
    subject and UPN come from the enrollment credential; ``subject = request`` keeps the CSR's."""
    requested, _, _ = await enroll_user(windows, "Requested Name")
    assert requested.subject.rfc4514_string() == "CN=Requested Name"
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    templates = [dict(t, subject="directory") if t["name"] == "GatewayUser" else t for t in rec.settings["templates"]]
    await door.update_configuration("windows", settings={**rec.settings, "templates": templates})
    user = await door.credentials.create_user("windows", "lee@corp.example", "lee-password-123456", actor="test")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = windows_csr(key, "Administrator", template_oid=await user_oid(windows), upn="administrator@corp.example")
    answer = rstr(await windows.post(windows.dev["ces"]["username"], rst_body(
        token=csr.public_bytes(serialization.Encoding.DER),
        security=windows.security("lee@corp.example", user.secret))))
    assert answer.certificate is not None
    cert = x509.load_der_x509_certificate(answer.certificate)
    assert cert.subject.rfc4514_string() == "CN=lee@corp.example"
    (upn,) = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert isinstance(upn, x509.OtherName) and upn.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    assert upn.value.endswith(b"lee@corp.example")


# --- renewal -----------------------------------------------------------------------------------


async def test_pkcs7_renewal_signed_by_the_old_certificate_over_the_certificate_endpoint(
        windows: WindowsServer) -> None:
    old, old_key, _ = await enroll_user(windows, "carol")
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = windows_csr(new_key, "carol")
    tls = credential(windows, old, old_key, "carol-old")
    rep = await windows.post(windows.dev["ces"]["certificate"],
                             rst_body(token=pkcs7_renewal(csr, old, old_key)), cert=tls)
    answer = rstr(rep)
    assert answer.disposition == wstep.ISSUED and answer.certificate is not None
    renewed = x509.load_der_x509_certificate(answer.certificate)
    assert renewed.subject == old.subject and renewed.serial_number != old.serial_number
    assert renewed.public_key().public_numbers() == new_key.public_key().public_numbers()


async def test_renewal_signed_by_a_foreign_certificate_issues_nothing(windows: WindowsServer) -> None:
    before = await issued_count(windows)
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = self_signed(foreign_key, "carol")
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "carol",
                      template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=pkcs7_renewal(csr, foreign, foreign_key), security=windows.security()))
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.CERT_E_UNTRUSTEDROOT)
    assert await issued_count(windows) == before
    assert await windows.table_rows(ces.requests) == []


async def test_renewal_signed_by_a_revoked_certificate_issues_nothing(windows: WindowsServer) -> None:
    old, old_key, _ = await enroll_user(windows, "dave")
    await windows.gw.door("windows").revoke(serial_hex(old.serial_number), RevocationReason.key_compromise,
                                            actor="test")
    before = await issued_count(windows)
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "dave")
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=pkcs7_renewal(csr, old, old_key), security=windows.security()))
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.CRYPT_E_REVOKED)
    assert await issued_count(windows) == before


async def test_key_based_renewal_with_a_revoked_certificate_issues_nothing(windows: WindowsServer) -> None:
    """The KeyBasedRenewal flow proper: the revoked certificate both signs the PKCS#7 and is
    the TLS client certificate. The KeyBasedRenewal CEP and the Certificate CES refuse it."""
    old, old_key, _ = await enroll_user(windows, "dora")
    tls = credential(windows, old, old_key, "dora-old")
    renewal = rst_body(token=pkcs7_renewal(windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                                       "dora"), old, old_key))
    await windows.gw.door("windows").revoke(serial_hex(old.serial_number), RevocationReason.superseded, actor="test")
    before = await issued_count(windows)
    from .helpers import get_policies_body

    policy = await windows.post(windows.dev["cep"]["keybasedrenewal"], get_policies_body(), cert=tls)
    policy.assert_fault()
    assert policy.fault_subcode == "FailedAuthentication" and b"GatewayUser" not in policy.body
    rep = await windows.post(windows.dev["ces"]["certificate"], renewal, cert=tls)
    enrollment_fault(rep)
    assert rep.fault_subcode == "FailedAuthentication"
    assert await issued_count(windows) == before
    assert [r.serial for r in await windows.table_rows(ces.requests)] == [serial_hex(old.serial_number)]


# --- pending + QueryTokenStatus ------------------------------------------------------------------


async def test_pending_request_then_query_token_status_after_approval(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings={**rec.settings, "approval": "manual"})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = windows_csr(key, "erin", template_oid=await user_oid(windows))
    url = windows.dev["ces"]["username"]
    answer = rstr(await windows.post(url, rst_body(token=csr.public_bytes(serialization.Encoding.DER),
                                                   security=windows.security())))
    assert answer.disposition == wstep.PENDING and answer.certificate is None
    assert answer.reference == url and answer.request_id is not None
    assert answer.cmc_response is not None
    assert cmc.read_pki_response(answer.cmc_response)[0][0][0] == cmc.PENDING
    assert await issued_count(windows) == 0

    query = rst_body(request_type=wstep.QUERY_TOKEN_STATUS, request_id=answer.request_id, security=windows.security())
    still = rstr(await windows.post(url, query))
    assert still.disposition == wstep.PENDING and still.request_id == answer.request_id

    # another caller asking for it learns nothing
    other = await door.credentials.create_user("windows", "mallory", "mallory-password", actor="test")
    foreign = await windows.post(url, rst_body(request_type=wstep.QUERY_TOKEN_STATUS, request_id=answer.request_id,
                                               security=windows.security("mallory", other.secret)))
    assert enrollment_fault(foreign)["ErrorCode"] == error_code(wstep.CERTSRV_E_PROPERTY_EMPTY)

    async with door.tables.read() as conn:
        row = (await conn.execute(select(ces.requests))).one()
    await door.approve(row.request_id, "operator")
    done = rstr(await windows.post(url, query))
    assert done.disposition == wstep.ISSUED and done.certificate is not None
    cert = x509.load_der_x509_certificate(done.certificate)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    again = rstr(await windows.post(url, query))  # answered from the recorded serial
    assert again.certificate == done.certificate


async def test_query_token_status_for_an_unknown_request(windows: WindowsServer) -> None:
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        request_type=wstep.QUERY_TOKEN_STATUS, request_id="987654", security=windows.security()))
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.CERTSRV_E_PROPERTY_EMPTY) and detail["RequestID"] == "987654"


# --- KET, unknown request types, refusals ---------------------------------------------------------


async def test_ket_answers_that_key_archival_is_not_offered(windows: WindowsServer) -> None:
    text = capture("xcep-wstep", "ms-wstep", "4.1.2.1-RST-KET-request.xml").read_bytes()
    body = text.replace(b"</a:ReplyTo>", b"</a:ReplyTo>" + windows.security().encode())
    rep = await windows.post(windows.dev["ces"]["username"], body)
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED)
    assert rep.relates_to == "urn:uuid:c2884a79-b943-45c6-ac02-7256071de309"


async def test_unknown_request_type_is_a_fault_and_issues_nothing(windows: WindowsServer) -> None:
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "frank",
                      template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=csr.public_bytes(serialization.Encoding.DER), security=windows.security(),
        request_type="http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew"))
    detail = enrollment_fault(rep)
    assert detail["InvalidRequest"] == "true" and detail["ErrorCode"] == error_code(wstep.E_INVALIDARG)
    assert await issued_count(windows) == 0


async def test_wrong_password_is_a_fault_and_issues_nothing(windows: WindowsServer) -> None:
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "grace",
                      template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=csr.public_bytes(serialization.Encoding.DER), security=windows.security(password="wrong-password")))
    detail = enrollment_fault(rep)
    assert rep.fault_subcode == "FailedAuthentication"
    assert detail["ErrorCode"] == error_code(wstep.E_ACCESSDENIED)
    assert await issued_count(windows) == 0


async def test_template_rules(windows: WindowsServer) -> None:
    """No template named, an unknown one, one the caller may not use: each refused, nothing issued."""
    url, security = windows.dev["ces"]["username"], windows.security()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bare = windows_csr(key, "henry").public_bytes(serialization.Encoding.DER)
    assert enrollment_fault(await windows.post(url, rst_body(token=bare, security=security)))["ErrorCode"] == \
        error_code(wstep.CERTSRV_E_NO_CERT_TYPE)
    unknown = await windows.post(url, rst_body(token=bare, security=windows.security(),
                                               context={"CertificateTemplate": "NoSuchTemplate"}))
    assert enrollment_fault(unknown)["ErrorCode"] == error_code(wstep.CERTSRV_E_UNSUPPORTED_CERT_TYPE)

    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    templates = [dict(t, enroll=["somebody-else"]) if t["name"] == "GatewayUser" else t
                 for t in rec.settings["templates"]]
    await door.update_configuration("windows", settings={**rec.settings, "templates": templates})
    denied = await windows.post(url, rst_body(token=bare, security=windows.security(),
                                              context={"CertificateTemplate": "GatewayUser"}))
    assert enrollment_fault(denied)["ErrorCode"] == error_code(wstep.CERTSRV_E_TEMPLATE_DENIED)
    assert await issued_count(windows) == 0
    assert await windows.table_rows(ces.requests) == []


async def test_a_refused_cmc_request_gets_a_failed_cmc_response_in_the_fault(windows: WindowsServer) -> None:
    """A request that was read but that the CA refuses (an RSA key below the template's 2048
    bits): the fault's BinaryResponse is a CMC response with status failed for the request's
    body part, its ErrorCode CERTSRV_E_KEY_LENGTH; nothing issued, no RequestID kept."""
    import base64

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = windows_csr(key, "small", template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=cmc_request(csr, key, body_part_id=7), security=windows.security()))
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.CERTSRV_E_KEY_LENGTH) and detail["InvalidRequest"] == "true"
    assert detail["BinaryResponse"] is not None
    statuses, certs = cmc.read_pki_response(base64.b64decode(detail["BinaryResponse"]))
    assert [(s[0], s[1]) for s in statuses] == [(cmc.FAILED, [7])] and certs == []
    assert await issued_count(windows) == 0 and await windows.table_rows(ces.requests) == []


async def test_certificate_endpoint_without_a_client_certificate(windows: WindowsServer) -> None:
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "ivan",
                      template_oid=await user_oid(windows))
    rep = await windows.post(windows.dev["ces"]["certificate"],
                             rst_body(token=csr.public_bytes(serialization.Encoding.DER)))
    assert rep.fault_subcode == "FailedAuthentication"
    enrollment_fault(rep)
    assert await issued_count(windows) == 0


# --- the captures ----------------------------------------------------------------------------------


async def test_spec_issue_request_is_answered_with_a_valid_fault(windows: WindowsServer) -> None:
    """MS-WSTEP 4.1.1.1 verbatim (plus our UsernameToken) asks for AD CS's ``User`` template,
    which the dev configuration does not have: a schema-valid enrollment fault (with that
    template it is issued: test_captures.py)."""
    text = capture("xcep-wstep", "ms-wstep", "4.1.1.1-RST-Issue-PKCS10-request.xml").read_bytes()
    body = text.replace(b"</a:ReplyTo>", b"</a:ReplyTo>" + windows.security().encode())
    rep = await windows.post(windows.dev["ces"]["username"], body)
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.CERTSRV_E_NO_CERT_TYPE)
    assert rep.relates_to == "urn:uuid:b5d1a601-5091-4a7d-b34b-5204c18b5919"
    assert await issued_count(windows) == 0


async def test_spec_response_captures_validate_against_our_schema() -> None:
    """The schema files are the spec's: AD CS's own answers (4.1.1.2, 4.1.2.2) validate."""
    from lxml import etree

    from .helpers import SOAP12, assert_valid

    for name in ("4.1.1.2-RSTRC-Issued-response.xml", "4.1.2.2-RSTR-KETFinal-response.xml"):
        root = etree.parse(str(capture("xcep-wstep", "ms-wstep", name))).getroot()
        assert_valid(root.find(f"{{{SOAP12}}}Body")[0], "wstep-wstrust.xsd")



async def test_kerberos_endpoint_answers_a_fault_until_negotiate_lands(windows: WindowsServer) -> None:
    rep = await windows.post(windows.dev["ces"]["kerberos"], rst_body(token=b"\x30\x00"))
    detail = enrollment_fault(rep)
    assert detail["ErrorCode"] == error_code(wstep.E_ACCESSDENIED)


async def test_only_x509v3_tokens_are_issued(windows: WindowsServer) -> None:
    """(MDM's DeviceEnrollmentToken is answered by MS-MDE2: test_mde2.py.)"""
    mdm = "urn:example:SomeOtherToken"
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "judy",
                      template_oid=await user_oid(windows))
    body = rst_body(token=csr.public_bytes(serialization.Encoding.DER), security=windows.security())
    rep = await windows.post(windows.dev["ces"]["username"], body.replace(wstep.X509V3.encode(), mdm.encode()))
    assert enrollment_fault(rep)["InvalidRequest"] == "true"
    assert await issued_count(windows) == 0


async def test_key_based_renewal_needs_no_enroll_permission_but_keeps_the_template(windows: WindowsServer) -> None:
    """Signed by the old certificate and presented as the TLS client certificate (the
    KeyBasedRenewal flow), a renewal is allowed where a new enrollment would not be; asking
    for another template than the old certificate's is refused."""
    old, old_key, _ = await enroll_user(windows, "kim")
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    templates = [dict(t, enroll=["somebody-else"]) for t in rec.settings["templates"]]
    await door.update_configuration("windows", settings={**rec.settings, "templates": templates})
    tls = credential(windows, old, old_key, "kim-old")
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answer = rstr(await windows.post(windows.dev["ces"]["certificate"], rst_body(
        token=pkcs7_renewal(windows_csr(new_key, "kim"), old, old_key)), cert=tls))
    assert answer.disposition == wstep.ISSUED

    before = await issued_count(windows)
    other = await windows.post(windows.dev["ces"]["certificate"], rst_body(
        token=pkcs7_renewal(windows_csr(new_key, "kim"), old, old_key),
        context={"CertificateTemplate": "GatewayComputer"}), cert=tls)
    assert enrollment_fault(other)["ErrorCode"] == error_code(wstep.CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE)
    assert await issued_count(windows) == before


async def test_an_unknown_configuration_is_an_enrollment_fault_too(windows: WindowsServer) -> None:
    rep = await windows.post("/windows/nosuchconfig/ces/username", rst_body(token=b"\x30\x00",
                                                                          security=windows.security()))
    enrollment_fault(rep)
