"""MS-WSTEP messages: the RequestSecurityToken a client sends and what the CES answers.

Reading is namespace-strict (:mod:`gateway.edge.xml`): every element is looked up by
its Clark name, never by the prefixes a client chose. Writing produces what the spec's
examples (4.1.1.2, 4.1.4) and AD CS send:

- issued: ``RequestSecurityTokenResponseCollection/RequestSecurityTokenResponse`` with
  ``TokenType`` (X509v3), ``DispositionMessage`` ("Issued"), a ``BinarySecurityToken``
  ``#PKCS7`` holding the CMC response with the chain, ``RequestedSecurityToken`` with the
  certificate (``#X509v3``), and ``RequestID``;
- pending: the same without the certificate: ``DispositionMessage`` "Taken Under
  Submission", the CMC response with status pending, ``RequestedSecurityToken`` holding
  only a ``SecurityTokenReference`` to this endpoint (where QueryTokenStatus goes, as
  cepces reads it), and the ``RequestID`` to ask for;
- an error: a SOAP 1.2 fault whose Detail is ``CertificateEnrollmentWSDetail``
  (``BinaryResponse``: a CMC response with status failed when there was a request to
  answer, ``ErrorCode``: the HRESULT as a signed 32-bit int, ``InvalidRequest``,
  ``RequestID``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from gateway.errors import BadRequest

from . import soap
from gateway.edge import xml as X
from .wssecurity import WSSE
from gateway.edge.xml import Element

WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
WSTEP = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment"
AUTHZ = "http://schemas.xmlsoap.org/ws/2006/12/authorization"

ACTION_RST = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep"
ACTION_RSTRC = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep"
ACTION_KET = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/KET"
ACTION_KET_FINAL = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTR/KETFinal"

ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
KET = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/KET"
QUERY_TOKEN_STATUS = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/QueryTokenStatus"
REQUEST_TYPES = (ISSUE, KET, QUERY_TOKEN_STATUS)

X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = WSSE + "#base64binary"
BASE64_NAMES = {BASE64.lower()}  # WSS writes #Base64Binary, Windows #base64binary
VALUE_PKCS7 = WSSE + "#PKCS7"
VALUE_TYPES = {
    VALUE_PKCS7,
    WSTEP + "#PKCS10",
    WSTEP + "#PKCS7",
    "http://schemas.microsoft.com/OfficeLiveServer/2007/11/SimpleAuth/Token#PKCS10",
}
"""ValueTypes a request token may carry; the bytes decide the form (:mod:`.cmc`)."""

ISSUED = "Issued"
PENDING = "Taken Under Submission"

MAX_TOKEN_CHARS = 96 * 1024


class InvalidRst(BadRequest):
    """A RequestSecurityToken this service cannot read (malformed, not a WSTEP request)."""


# --- HRESULTs ------------------------------------------------------------------------------


def hresult(value: int) -> int:
    """An HRESULT as the xs:int ``ErrorCode`` carries it (two's complement)."""
    return value - (1 << 32) if value & 0x80000000 else value


E_FAIL = 0x80004005
E_ACCESSDENIED = 0x80070005
E_INVALIDARG = 0x80070057
NTE_BAD_SIGNATURE = 0x80090006
CRYPT_E_REVOKED = 0x80092010
CERT_E_EXPIRED = 0x800B0101
CERT_E_UNTRUSTEDROOT = 0x800B0109
CERTSRV_E_BAD_REQUESTSUBJECT = 0x80094001
CERTSRV_E_NO_REQUEST = 0x80094002
CERTSRV_E_PROPERTY_EMPTY = 0x80094004
CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED = 0x8009400A
CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE = 0x8009400E
CERTSRV_E_TEMPLATE_DENIED = 0x80094012
CERTSRV_E_ADMIN_DENIED_REQUEST = 0x80094014
CERTSRV_E_UNSUPPORTED_CERT_TYPE = 0x80094800
CERTSRV_E_NO_CERT_TYPE = 0x80094801
CERTSRV_E_BAD_RENEWAL_SUBJECT = 0x80094806
CERTSRV_E_SUBJECT_UPN_REQUIRED = 0x8009480D
CERTSRV_E_SUBJECT_DNS_REQUIRED = 0x8009480F
CERTSRV_E_KEY_LENGTH = 0x80094811
CERTSRV_E_SUBJECT_EMAIL_REQUIRED = 0x80094812
RPC_S_SERVER_UNAVAILABLE = 0x800706BA
"""What Windows' enrollment reports when the CA cannot be reached."""


# --- the request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rst:
    request_type: str
    token_type: str | None
    token: bytes | None  # the decoded BinarySecurityToken (Issue)
    value_type: str | None
    request_id: str | None  # wstep:RequestID, None when absent or nil
    request_ket: bool
    context: tuple[tuple[str, str], ...]  # auth:AdditionalContext ContextItem (Name, Value)

    def context_value(self, name: str) -> str | None:
        """A ContextItem's value by name, case-insensitively (Windows sends ``CertificateTemplate``)."""
        return next((v for n, v in self.context if n.lower() == name.lower()), None)


def _text(el: Element, ns: str, local: str) -> str | None:
    try:
        return X.child_text(el, ns, local)
    except X.XmlError as exc:
        raise InvalidRst(exc.detail) from None


def parse_rst(payload: Element) -> Rst:
    """The Body's RequestSecurityToken (MS-WSTEP 3.1.4.1.3.3)."""
    if payload.tag != X.qname(WST, "RequestSecurityToken"):
        raise InvalidRst("the Body must hold a wst:RequestSecurityToken")
    request_type = _text(payload, WST, "RequestType")
    if not request_type:
        raise InvalidRst("the RequestSecurityToken has no RequestType")
    token_type = _text(payload, WST, "TokenType")
    token, value_type = _binary_token(payload)
    request_id = _text(payload, WSTEP, "RequestID") or None
    if request_id is not None and len(request_id) > 64:
        raise InvalidRst("the RequestID is too long")
    try:
        request_ket = X.child(payload, WST, "RequestKET") is not None
    except X.XmlError as exc:
        raise InvalidRst(exc.detail) from None
    return Rst(request_type, token_type, token, value_type, request_id, request_ket, _context(payload))


def _binary_token(payload: Element) -> tuple[bytes | None, str | None]:
    found = X.children(payload, WSSE, "BinarySecurityToken")
    if not found:
        return None, None
    if len(found) > 1:
        raise InvalidRst("more than one BinarySecurityToken in the request")
    el = found[0]
    encoding = (el.get("EncodingType") or BASE64).strip()
    if encoding.lower() not in BASE64_NAMES:
        raise InvalidRst("the BinarySecurityToken must be base64binary")
    value_type = el.get("ValueType")
    if value_type is not None and value_type.strip() not in VALUE_TYPES:
        raise InvalidRst("the BinarySecurityToken's ValueType is not a certificate request")
    try:
        body = X.text(el)
    except X.XmlError as exc:
        raise InvalidRst(exc.detail) from None
    if len(body) > MAX_TOKEN_CHARS:
        raise InvalidRst("the BinarySecurityToken is too large")
    # Windows wraps the base64 with CR LF (and escapes the CR as &#xD;): whitespace is dropped
    try:
        data = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRst("the BinarySecurityToken is not base64") from None
    return data, None if value_type is None else value_type.strip()


def _context(payload: Element) -> tuple[tuple[str, str], ...]:
    contexts = X.children(payload, AUTHZ, "AdditionalContext")
    if len(contexts) > 1:
        raise InvalidRst("more than one AdditionalContext")
    out: list[tuple[str, str]] = []
    if contexts:
        items = X.children(contexts[0], AUTHZ, "ContextItem")
        if len(items) > 64:
            raise InvalidRst("too many ContextItems")
        for item in items:
            name = item.get("Name")
            value = _text(item, AUTHZ, "Value")
            if name and value is not None:
                out.append((name[:256], value[:1024]))
    return tuple(out)


# --- the answers -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _collection() -> tuple[Element, Element]:
    collection = X.element(WST, "RequestSecurityTokenResponseCollection", nsmap={None: WST})
    rstr = X.sub(collection, WST, "RequestSecurityTokenResponse")
    X.sub(rstr, WST, "TokenType", X509V3)
    return collection, rstr


def _disposition(rstr: Element, message: str) -> None:
    el = X.element(WSTEP, "DispositionMessage", message, attrib={X.qname(X.XML_NS, "lang"): "en-US"},
                   nsmap={None: WSTEP})
    rstr.append(el)


def _token(parent: Element, value_type: str, data: bytes) -> None:
    parent.append(X.element(WSSE, "BinarySecurityToken", _b64(data),
                            attrib={"ValueType": value_type, "EncodingType": BASE64}, nsmap={None: WSSE}))


def _request_id(parent: Element, request_id: str) -> None:
    parent.append(X.element(WSTEP, "RequestID", request_id, nsmap={None: WSTEP}))


def issued(certificate_der: bytes, cmc_response: bytes, request_id: str) -> soap.Reply:
    """The RSTRC for an issued certificate."""
    collection, rstr = _collection()
    _disposition(rstr, ISSUED)
    _token(rstr, VALUE_PKCS7, cmc_response)
    requested = X.sub(rstr, WST, "RequestedSecurityToken")
    _token(requested, X509V3, certificate_der)
    _request_id(rstr, request_id)
    return soap.Reply(ACTION_RSTRC, [collection])


def pending(cmc_response: bytes, request_id: str, poll_uri: str) -> soap.Reply:
    """The RSTRC for a request held for approval: a reference, no certificate."""
    collection, rstr = _collection()
    _disposition(rstr, PENDING)
    _token(rstr, VALUE_PKCS7, cmc_response)
    requested = X.sub(rstr, WST, "RequestedSecurityToken")
    reference = X.element(WSSE, "SecurityTokenReference", nsmap={None: WSSE})
    X.sub(reference, WSSE, "Reference", attrib={"URI": poll_uri})
    requested.append(reference)
    _request_id(rstr, request_id)
    return soap.Reply(ACTION_RSTRC, [collection])


def enrollment_detail(error_code: int, *, invalid_request: bool, request_id: str | None = None,
                      binary_response: bytes | None = None) -> Element:
    """``CertificateEnrollmentWSDetail`` (MS-WSTEP 3.1.4.1.2.1), fields in schema order."""
    detail = X.element(WSTEP, "CertificateEnrollmentWSDetail", nsmap={None: WSTEP, "xsi": X.XSI})
    if binary_response is not None:
        X.sub(detail, WSTEP, "BinaryResponse", _b64(binary_response))
    else:
        X.nil(detail, WSTEP, "BinaryResponse")
    X.sub(detail, WSTEP, "ErrorCode", str(hresult(error_code)))
    X.sub(detail, WSTEP, "InvalidRequest", "true" if invalid_request else "false")
    if request_id is not None:
        X.sub(detail, WSTEP, "RequestID", request_id)
    else:
        X.nil(detail, WSTEP, "RequestID")
    return detail


class EnrollmentFault(soap.SoapFault):
    """A SOAP fault carrying CertificateEnrollmentWSDetail: what every CES error answers."""

    def __init__(self, reason: str, error_code: int, *, invalid_request: bool, receiver: bool = False,
                 request_id: str | None = None, binary_response: bytes | None = None,
                 subcode: tuple[str, str] | None = None) -> None:
        super().__init__(
            reason, code=soap.RECEIVER if receiver else soap.SENDER, subcode=subcode,
            detail=enrollment_detail(error_code, invalid_request=invalid_request, request_id=request_id,
                                     binary_response=binary_response),
        )
        self.error_code = error_code
        self.invalid_request = invalid_request
        self.request_id = request_id


# --- reading answers (tests, the conformance simulator) ------------------------------------


@dataclass(frozen=True)
class Rstr:
    disposition: str | None
    certificate: bytes | None
    cmc_response: bytes | None
    request_id: str | None
    reference: str | None


def read_rstrc(payload: Element) -> Rstr:
    """The one RequestSecurityTokenResponse of an RSTRC payload, as a client reads it."""
    rstr = X.one(payload, WST, "RequestSecurityTokenResponse")
    disposition = X.child_text(rstr, WSTEP, "DispositionMessage")
    cmc_el = X.child(rstr, WSSE, "BinarySecurityToken")
    requested = X.child(rstr, WST, "RequestedSecurityToken")
    cert = reference = None
    if requested is not None:
        cert_el = X.child(requested, WSSE, "BinarySecurityToken")
        if cert_el is not None:
            cert = base64.b64decode(X.text(cert_el))
        ref_el = X.child(requested, WSSE, "SecurityTokenReference")
        if ref_el is not None:
            reference = X.one(ref_el, WSSE, "Reference").get("URI")
    return Rstr(disposition, cert, None if cmc_el is None else base64.b64decode(X.text(cmc_el)),
                X.child_text(rstr, WSTEP, "RequestID"), reference)
