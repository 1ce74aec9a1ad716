"""MS-WSTEP requests as Windows (certenroll) builds them, and checks on the answers.

Requests are written out as text, the way the spec's 4.1.1.1 example is, so the tests
exercise the parser with a client's bytes, not with our own builders.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from gateway.edge import cms as ecms
from gateway.edge import der
from protocols.windows import cmc, wstep
from protocols.windows.templates import TEMPLATE_INFORMATION

from .helpers import SOAP12, WSA, WSSE, SoapReply, assert_valid

WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_TEXT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
PASSWORD_DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
NOW_SKEW = dt.timedelta(seconds=0)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def username_token(username: str, password: str, *, nonce: bytes | None = None, created: dt.datetime | None = None,
                   password_type: str | None = PASSWORD_TEXT) -> str:
    kind = f' o:Type="{password_type}"' if password_type is not None else ""
    extra = ""
    if nonce is not None:
        extra += (f'<o:Nonce EncodingType="{WSSE}#Base64Binary">{base64.b64encode(nonce).decode()}</o:Nonce>')
    if created is not None:
        extra += f"<u:Created>{iso(created)}</u:Created>"
    return (f'<o:Security xmlns:o="{WSSE}" xmlns:u="{WSU}" s:mustUnderstand="1">'
            f'<o:UsernameToken u:Id="uuid-{uuid.uuid4()}-1"><o:Username>{username}</o:Username>'
            f"<o:Password{kind}>{password}</o:Password>{extra}</o:UsernameToken></o:Security>")


def rst_body(*, token: bytes | None = None, request_type: str = wstep.ISSUE, action: str = wstep.ACTION_RST,
             security: str = "", request_id: str | None = None, context: dict[str, str] | None = None,
             value_type: str = wstep.VALUE_PKCS7, message_id: str | None = None, ket: bool = False) -> bytes:
    """A RequestSecurityToken envelope shaped as MS-WSTEP 4.1.1.1 (Windows' certenroll)."""
    bst = ""
    if token is not None:
        b64 = base64.b64encode(token).decode()
        wrapped = "&#xD;\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))  # as certenroll wraps it
        bst = (f'<BinarySecurityToken xmlns="{WSSE}" EncodingType="{WSSE}#base64binary" '
               f'ValueType="{value_type}">{wrapped}</BinarySecurityToken>')
    rid = (f'<RequestID xmlns="{wstep.WSTEP}">{request_id}</RequestID>' if request_id is not None
           else f'<RequestID xmlns="{wstep.WSTEP}" xsi:nil="true"/>')
    ctx = ""
    if context:
        items = "".join(f'<ContextItem Name="{k}"><Value>{v}</Value></ContextItem>' for k, v in context.items())
        ctx = f'<AdditionalContext xmlns="{wstep.AUTHZ}">{items}</AdditionalContext>'
    return f"""<s:Envelope xmlns:a="{WSA}" xmlns:s="{SOAP12}">
<s:Header>
<a:Action s:mustUnderstand="1">{action}</a:Action>
<a:MessageID>{message_id or "urn:uuid:" + str(uuid.uuid4())}</a:MessageID>
<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
{security}
</s:Header>
<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<RequestSecurityToken xmlns="{wstep.WST}">
<TokenType>{wstep.X509V3}</TokenType>
<RequestType>{request_type}</RequestType>
{bst}{"<RequestKET/>" if ket else ""}{ctx}{rid}
</RequestSecurityToken>
</s:Body>
</s:Envelope>""".encode()


class _TemplateInfo(core.Sequence):  # type: ignore[misc]
    _fields = [("id", core.ObjectIdentifier), ("major", core.Integer), ("minor", core.Integer, {"optional": True})]


def template_extension(oid: str, major: int = 100, minor: int = 0) -> x509.UnrecognizedExtension:
    value = _TemplateInfo({"id": oid, "major": major, "minor": minor}).dump()
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(TEMPLATE_INFORMATION), value)


def windows_csr(key: Any, cn: str, *, template_oid: str | None = None, upn: str | None = None) -> x509.CertificateSigningRequest:
    """A PKCS#10 as certenroll makes one: the template extension, a UPN for user templates."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if template_oid is not None:
        builder = builder.add_extension(template_extension(template_oid), critical=False)
    if upn is not None:
        other = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), core.UTF8String(upn).dump())
        builder = builder.add_extension(x509.SubjectAlternativeName([other]), critical=False)
    return builder.sign(key, hashes.SHA256())


def cmc_request(csr: x509.CertificateSigningRequest, key: Any, *, body_part_id: int = 1) -> bytes:
    """A CMC Full PKI Request signed with the requested key (named by its key identifier)."""
    tcr = cmc.TaggedCertificationRequest({
        "body_part_id": body_part_id,
        "certification_request": core.Any.load(csr.public_bytes(serialization.Encoding.DER)),
    })
    pki_data = der.sequence(der.sequence(), der.sequence(der.tlv(0xA0, bytes(tcr.contents))), der.sequence(),
                            der.sequence())
    throwaway = self_signed(key)
    signed = ecms.sign(pki_data, ecms.Signer(throwaway, key), digest_name="sha256",
                       signing_time=dt.datetime.now(dt.timezone.utc), certificates=(), content_type=cmc.ID_CCT_PKI_DATA)
    from asn1crypto import cms

    info = cms.ContentInfo.load(signed)
    si = info["content"]["signer_infos"][0]
    si["version"] = "v3"
    si["sid"] = cms.SignerIdentifier({"subject_key_identifier": x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()).digest})
    return bytes(info.dump(force=True))


def pkcs7_renewal(csr: x509.CertificateSigningRequest, old_cert: x509.Certificate, old_key: Any) -> bytes:
    """A PKCS#7 renewal: SignedData over the PKCS#10, signed by the certificate it renews."""
    return ecms.sign(csr.public_bytes(serialization.Encoding.DER), ecms.Signer(old_cert, old_key),
                     digest_name="sha256", signing_time=dt.datetime.now(dt.timezone.utc), certificates=(old_cert,))


def self_signed(key: Any, cn: str = "throwaway") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))


# --- answers -----------------------------------------------------------------------------


def rstr(rep: SoapReply) -> wstep.Rstr:
    """The RSTRC of a 200 answer, validated against the MS-WSTEP schema."""
    assert rep.status == 200, (rep.status, rep.body[:800])
    assert rep.action == wstep.ACTION_RSTRC
    assert rep.payload.tag == f"{{{wstep.WST}}}RequestSecurityTokenResponseCollection"
    assert_valid(rep.payload, "wstep-wstrust.xsd")
    return wstep.read_rstrc(rep.payload)


def enrollment_fault(rep: SoapReply) -> dict[str, str | None]:
    """The CertificateEnrollmentWSDetail of a fault answer, validated against the schema."""
    rep.assert_fault()
    detail = rep.payload.find(f"{{{SOAP12}}}Detail/{{{wstep.WSTEP}}}CertificateEnrollmentWSDetail")
    assert detail is not None, rep.body[:800]
    assert_valid(detail, "wstep.xsd")
    return {el.tag.split("}")[1]: el.text for el in detail}


def error_code(value: int) -> str:
    return str(wstep.hresult(value))
