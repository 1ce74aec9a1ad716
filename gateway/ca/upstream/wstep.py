"""AD CS upstream (MS-WSTEP as a client): a Microsoft CA's Certificate Enrollment Web
Service (CES), or any CES-compatible service, signs what this gateway's protocols accept.

The gateway sends the device's PKCS#10, unchanged, in a WS-Trust RequestSecurityToken
(``RequestType`` Issue, MS-WSTEP 3.1.4.1.3.3) to the CES URL over HTTPS, SOAP 1.2 with
WS-Addressing, authenticated either by a WS-Security UsernameToken (``#PasswordText`` with
a fresh ``Nonce`` and ``Created``, as the CES ``UsernamePassword`` endpoint expects) or by a
TLS client certificate (the ``Certificate`` endpoint). The certificate template is named
the way certenroll names it for a CSR it did not make: an ``auth:AdditionalContext``
``ContextItem`` ``CertificateTemplate`` (the CSR cannot carry the name-value pair without
being signed again by the device's key).

Answers (MS-WSTEP 3.1.4.1.2): an issued certificate is the ``RequestedSecurityToken``'s
``#X509v3`` BinarySecurityToken; "Taken Under Submission" (no certificate, a
``RequestID``) is a request the CA holds for its certificate manager: the gateway keeps the
RequestID as the handle and asks again with ``RequestType`` QueryTokenStatus and that
``RequestID`` (3.1.4.1.3.3, as certenroll's ``-retrieve`` does). A SOAP fault carries
``CertificateEnrollmentWSDetail``: its ``ErrorCode`` HRESULT decides what the gateway says.

MS-WSTEP has no way to learn the CA certificate before enrolling (that is MS-XCEP's
``cAs``, or LDAP): the operator passes the issuing CA certificate and its chain as PEM
(:func:`discover` checks and orders them; see its docstring). MS-WSTEP has no revocation
either: revoking here records the revocation and audits that the CA was not told
(``revoke_not_upstream``); the CA's operator revokes it there (certutil -revoke).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ...edge import xml as X
from ...errors import BadRequest, PolicyViolation, Unavailable
from ...sealing import Sealer
from ...store.records import CARecord
from ..backend import Capabilities, PendingUpstream, Signed, SignRequest, SignResult
from ..pem import load_certificates
from .base import UpstreamCA
from .est import UNPARSEABLE, issuing_and_chain
from .http import Reply, seal_credentials, ssl_context

KIND = "adcs"
log = logging.getLogger(__name__)

# --- the namespaces and URIs (MS-WSTEP 2.2, WS-Trust 1.3, WSS 1.0) ------------------------

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
WSTEP = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment"
AUTHZ = "http://schemas.xmlsoap.org/ws/2006/12/authorization"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

ACTION_RST = WSTEP + "/RST/wstep"
ACTION_RSTRC = WSTEP + "/RSTRC/wstep"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
ISSUE = WST + "/Issue"
QUERY_TOKEN_STATUS = WSTEP + "/QueryTokenStatus"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
PKCS10 = WSTEP + "#PKCS10"
BASE64 = WSSE + "#base64binary"
PASSWORD_TEXT = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
                 "#PasswordText")

ISSUED = "issued"
PENDING = "pending"
FAULT = "fault"

# HRESULTs a CES puts in CertificateEnrollmentWSDetail/ErrorCode
E_ACCESSDENIED = 0x80070005
CERTSRV_E_ADMIN_DENIED_REQUEST = 0x80094014
CERTSRV_E_PROPERTY_EMPTY = 0x80094004
RPC_S_SERVER_UNAVAILABLE = 0x800706BA
_POLICY_CODES = {
    0x80070057,  # E_INVALIDARG
    0x80090006,  # NTE_BAD_SIGNATURE
    0x80094001,  # CERTSRV_E_BAD_REQUESTSUBJECT
    0x80094012,  # CERTSRV_E_TEMPLATE_DENIED
    CERTSRV_E_ADMIN_DENIED_REQUEST,
    0x80094800,  # CERTSRV_E_UNSUPPORTED_CERT_TYPE
    0x80094801,  # CERTSRV_E_NO_CERT_TYPE
    0x8009480D,  # CERTSRV_E_SUBJECT_UPN_REQUIRED
    0x8009480F,  # CERTSRV_E_SUBJECT_DNS_REQUIRED
    0x80094811,  # CERTSRV_E_KEY_LENGTH
    0x80094812,  # CERTSRV_E_SUBJECT_EMAIL_REQUIRED
}
"""What the CA decided about the request itself (the client's problem, not the gateway's)."""
_AUTH_SUBCODES = {"FailedAuthentication", "InvalidSecurity", "InvalidSecurityToken", "UnsupportedSecurityToken",
                  "MessageExpired", "SecurityTokenUnavailable"}
"""WS-Security fault subcodes (WSS 1.0 section 12): the gateway's credentials."""

MAX_REQUEST_ID = 64
MAX_REASON = 300


# --- the answer, as a pure function (fuzzed: fuzz/targets/wstep_upstream_answer.py) --------


@dataclass(frozen=True)
class Answer:
    """What a CES answered: ``outcome`` is ``issued``, ``pending`` or ``fault``."""

    outcome: str
    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()  # the PKCS#7/CMC token's certificates, when readable
    request_id: str | None = None
    disposition: str | None = None
    reason: str | None = None  # a fault's Reason text
    error_code: int | None = None  # a fault's HRESULT, unsigned
    subcode: str | None = None  # a fault's Subcode local name (``FailedAuthentication``)
    receiver: bool = False  # a fault with Code Receiver: the server's failure


def _clip(value: str | None, limit: int = MAX_REASON) -> str | None:
    return None if value is None else " ".join(value.split())[:limit]


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Unavailable("the upstream CES's answer holds a BinarySecurityToken that is not base64") from None


def _certificate(der: bytes) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.subject, cert.issuer, cert.extensions, cert.public_key()  # parsed lazily: fail here
    except UNPARSEABLE:
        raise Unavailable("the upstream CES issued a certificate that does not parse") from None
    return cert


def _pkcs7_certificates(der: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of the RSTR's PKCS#7 / CMC response token; none when unreadable
    (the chain is informative only: the record's chain is what the gateway serves)."""
    try:
        from asn1crypto import cms

        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            return ()
        out = []
        for choice in info["content"]["certificates"] or []:
            if choice.name == "certificate":
                cert = x509.load_der_x509_certificate(choice.chosen.dump())
                cert.subject, cert.issuer, cert.extensions, cert.public_key()
                out.append(cert)
        return tuple(out)
    except (*UNPARSEABLE, KeyError, AttributeError, IndexError, OverflowError):
        return ()


def _text(el: X.Element, ns: str, local: str) -> str | None:
    found = X.child(el, ns, local)
    if found is None or X.is_nil(found):
        return None
    return X.text(found)


def _fault(fault: X.Element) -> Answer:
    code = X.child(fault, SOAP12, "Code")
    receiver, subcode = False, None
    if code is not None:
        value = _text(code, SOAP12, "Value") or ""
        receiver = value.rsplit(":", 1)[-1] == "Receiver"
        sub = X.child(code, SOAP12, "Subcode")
        if sub is not None:
            subcode = _clip((_text(sub, SOAP12, "Value") or "").rsplit(":", 1)[-1], 64) or None
    reason = None
    reason_el = X.child(fault, SOAP12, "Reason")
    if reason_el is not None:
        texts = X.children(reason_el, SOAP12, "Text")
        reason = _clip(X.text(texts[0])) if texts else None
    error_code, request_id = None, None
    detail = X.child(fault, SOAP12, "Detail")
    if detail is not None:
        ws_detail = X.child(detail, WSTEP, "CertificateEnrollmentWSDetail")
        if ws_detail is not None:
            raw = (_text(ws_detail, WSTEP, "ErrorCode") or "").strip()
            if raw.lstrip("-").isdigit() and len(raw) <= 12:
                error_code = int(raw) & 0xFFFFFFFF
            request_id = _clip(_text(ws_detail, WSTEP, "RequestID"), MAX_REQUEST_ID)
    return Answer(FAULT, request_id=request_id or None, reason=reason, error_code=error_code, subcode=subcode,
                  receiver=receiver)


def _rstr(payload: X.Element) -> Answer:
    if payload.tag == X.qname(WST, "RequestSecurityTokenResponseCollection"):
        rstr = X.one(payload, WST, "RequestSecurityTokenResponse")
    elif payload.tag == X.qname(WST, "RequestSecurityTokenResponse"):
        rstr = payload
    else:
        raise Unavailable("the upstream CES's answer is not a RequestSecurityTokenResponse(Collection)")
    disposition = _clip(_text(rstr, WSTEP, "DispositionMessage"), 120)
    request_id = _clip(_text(rstr, WSTEP, "RequestID"), MAX_REQUEST_ID + 1) or None
    if request_id is not None and len(request_id) > MAX_REQUEST_ID:
        raise Unavailable("the upstream CES's RequestID is too long")
    chain: tuple[x509.Certificate, ...] = ()
    token = X.child(rstr, WSSE, "BinarySecurityToken")
    if token is not None:
        chain = _pkcs7_certificates(_b64(X.text(token)))
    cert = None
    requested = X.child(rstr, WST, "RequestedSecurityToken")
    if requested is not None:
        cert_el = X.child(requested, WSSE, "BinarySecurityToken")
        if cert_el is not None:
            cert = _certificate(_b64(X.text(cert_el)))
    if cert is not None:
        return Answer(ISSUED, certificate=cert, chain=chain, request_id=request_id, disposition=disposition)
    if request_id is None:
        raise Unavailable("the upstream CES answered neither a certificate nor a RequestID to ask about")
    return Answer(PENDING, chain=chain, request_id=request_id, disposition=disposition)


def parse_answer(body: bytes) -> Answer:
    """A CES answer body (SOAP 1.2 envelope) as issued, pending or a fault. Raises only
    :class:`gateway.errors.Unavailable` for what is not such an answer."""
    try:
        root = X.parse(body)
        if root.tag != X.qname(SOAP12, "Envelope"):
            raise Unavailable("the upstream CES's answer is not a SOAP 1.2 envelope")
        envelope_body = X.one(root, SOAP12, "Body")
        parts = X.elements(envelope_body)
        if len(parts) != 1:
            raise Unavailable("the upstream CES's answer must hold one element in its Body")
        if parts[0].tag == X.qname(SOAP12, "Fault"):
            return _fault(parts[0])
        return _rstr(parts[0])
    except X.XmlError as exc:
        raise Unavailable(f"the upstream CES's answer is not XML it may send ({exc.detail[:120]})") from None
    except (ValueError, TypeError) as exc:  # lxml's odd corners (e.g. text of a non-text node)
        if isinstance(exc, Unavailable):
            raise
        raise Unavailable("the upstream CES's answer could not be read") from None


# --- the request ---------------------------------------------------------------------------


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_rst(*, request_type: str, url: str, csr_der: bytes | None = None, request_id: str | None = None,
              template: str | None = None, username: str | None = None, password: str | None = None,
              now: dt.datetime | None = None) -> bytes:
    """A RequestSecurityToken envelope as certenroll sends it (MS-WSTEP 4.1.1.1)."""
    env = X.element(SOAP12, "Envelope", nsmap={"s": SOAP12, "a": WSA})
    header = X.sub(env, SOAP12, "Header")
    must = {X.qname(SOAP12, "mustUnderstand"): "1"}
    X.sub(header, WSA, "Action", ACTION_RST, attrib=must)
    X.sub(header, WSA, "MessageID", f"urn:uuid:{uuid.uuid4()}")
    reply_to = X.sub(header, WSA, "ReplyTo")
    X.sub(reply_to, WSA, "Address", ANONYMOUS)
    X.sub(header, WSA, "To", url, attrib=must)
    if username is not None and password is not None:
        security = X.element(WSSE, "Security", attrib=must, nsmap={"o": WSSE, "u": WSU})
        header.append(security)
        token = X.sub(security, WSSE, "UsernameToken", attrib={X.qname(WSU, "Id"): f"uuid-{uuid.uuid4()}-1"})
        X.sub(token, WSSE, "Username", username)
        X.sub(token, WSSE, "Password", password, attrib={"Type": PASSWORD_TEXT})
        X.sub(token, WSSE, "Nonce", base64.b64encode(os.urandom(16)).decode(),
              attrib={"EncodingType": WSSE + "#Base64Binary"})
        X.sub(token, WSU, "Created", _iso(now or dt.datetime.now(dt.timezone.utc)))
    body = X.sub(env, SOAP12, "Body")
    rst = X.element(WST, "RequestSecurityToken", nsmap={None: WST})
    body.append(rst)
    X.sub(rst, WST, "TokenType", X509V3)
    X.sub(rst, WST, "RequestType", request_type)
    if csr_der is not None:
        rst.append(X.element(WSSE, "BinarySecurityToken", base64.b64encode(csr_der).decode(),
                             attrib={"ValueType": PKCS10, "EncodingType": BASE64}, nsmap={None: WSSE}))
    if template:
        context = X.element(AUTHZ, "AdditionalContext", nsmap={None: AUTHZ})
        item = X.sub(context, AUTHZ, "ContextItem", attrib={"Name": "CertificateTemplate"})
        X.sub(item, AUTHZ, "Value", template)
        rst.append(context)
    if request_id is not None:
        rst.append(X.element(WSTEP, "RequestID", request_id, nsmap={None: WSTEP}))
    else:
        rid = X.element(WSTEP, "RequestID", nsmap={None: WSTEP, "xsi": XSI})
        rid.set(X.qname(XSI, "nil"), "true")
        rst.append(rid)
    return X.serialize(env)


# --- the backend ---------------------------------------------------------------------------


def _spki(key: Any) -> bytes:
    out: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return out


def refusal(ca_id: str, answer: Answer) -> Exception:
    """A fault as the gateway's error: credentials -> Unavailable, a decision about the
    request -> PolicyViolation (with the CES's text), anything else -> Unavailable."""
    text = answer.reason or "no reason given"
    code = f" (0x{answer.error_code:08X})" if answer.error_code is not None else ""
    if answer.subcode in _AUTH_SUBCODES or answer.error_code == E_ACCESSDENIED:
        return Unavailable(f"CA {ca_id}: the upstream CES refused the gateway's credentials{code}: {text}")
    if not answer.receiver and answer.error_code in _POLICY_CODES:
        return PolicyViolation(f"the upstream CES refused the request{code}: {text}")
    return Unavailable(f"CA {ca_id}: the upstream CES failed{code}: {text}")


class WstepUpstream(UpstreamCA):
    capabilities = Capabilities(needs_csr=True, holds=True)
    protocol = "MS-WSTEP"
    revoke_there = "the AD CS operator must revoke it there (certutil -revoke)"

    def __init__(self, record: CARecord, sealer: Sealer) -> None:
        super().__init__(record, sealer, peer="CES", url=str(record.backend_settings.get("url", "")))
        s = record.backend_settings
        self.template = str(s["template"]) if s.get("template") else None

    async def _ask(self, envelope: bytes) -> Answer:
        reply = await self._http.request("POST", self.url, data=envelope, headers={
            "Content-Type": f'application/soap+xml; charset=utf-8; action="{ACTION_RST}"'})
        if reply.status == 401:
            raise Unavailable(f"CA {self.id}: the upstream CES refused the gateway's credentials "
                              f"(HTTP {reply.status})")
        if reply.status not in (200, 500) or not _is_soap(reply):
            raise Unavailable(f"CA {self.id}: the upstream CES failed (HTTP {reply.status}: {reply.text()})")
        try:
            answer = parse_answer(reply.body)
        except Unavailable as exc:
            raise Unavailable(f"CA {self.id}: {exc.detail}") from None
        if answer.outcome == FAULT:
            raise refusal(self.id, answer)
        return answer

    def _result(self, answer: Answer, wanted: bytes) -> SignResult:
        if answer.outcome == PENDING and answer.request_id is not None:
            return PendingUpstream(handle=answer.request_id, retry_after=60)
        if answer.certificate is None or _spki(answer.certificate.public_key()) != wanted:
            raise Unavailable(f"CA {self.id}: the upstream CES returned no certificate for the CSR's key")
        return Signed(answer.certificate)

    async def sign(self, request: SignRequest) -> SignResult:
        if request.csr is None:
            raise Unavailable(f"CA {self.id} is an AD CS (MS-WSTEP) upstream and signs CSRs only; this request has none")
        csr_der = request.csr.public_bytes(serialization.Encoding.DER)
        answer = await self._ask(build_rst(request_type=ISSUE, url=self.url, csr_der=csr_der, template=self.template,
                                           username=self._username, password=self._password))
        result = self._result(answer, _spki(request.csr.public_key()))
        if isinstance(result, PendingUpstream):  # the key is needed again when the certificate comes
            return PendingUpstream(handle=_handle(result.handle, _spki(request.csr.public_key())),
                                   retry_after=result.retry_after)
        return result

    async def poll(self, handle: str) -> SignResult:
        request_id, wanted = _unhandle(handle)
        answer = await self._ask(build_rst(request_type=QUERY_TOKEN_STATUS, url=self.url, request_id=request_id,
                                           username=self._username, password=self._password))
        result = self._result(answer, wanted)
        if isinstance(result, PendingUpstream):
            return PendingUpstream(handle=handle, retry_after=result.retry_after)
        return result



def _is_soap(reply: Reply) -> bool:
    kind = next((v for k, v in reply.headers.items() if k.lower() == "content-type"), "")
    return "soap+xml" in kind.lower() or "xml" in kind.lower()


def _handle(request_id: str, spki: bytes) -> str:
    """The held request's handle: the CES RequestID, then the CSR key's SPKI (base64) to
    check the certificate against when it comes."""
    return f"{request_id}:{base64.b64encode(spki).decode()}"


def _unhandle(handle: str) -> tuple[str, bytes]:
    request_id, _, spki = handle.partition(":")
    try:
        return request_id, base64.b64decode(spki, validate=True)
    except (binascii.Error, ValueError):
        raise Unavailable("the held request's upstream handle is not one this connector made") from None


# --- creating the CA -----------------------------------------------------------------------


def discover(url: str, ca_pem: str, trust_pem: str | None = None) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The issuing CA and its chain, from what the operator passes (``--upstream-ca-cert``:
    a PEM file with the AD CS issuing CA certificate, and its issuers up to the root, in any
    order). MS-WSTEP offers no way to ask for the CA certificate before a request is issued
    (MS-XCEP's ``cAs`` or the AD ``CN=AIA`` container do; ``certutil -ca.cert`` exports it).
    ``url`` and ``trust_pem`` are checked for form only: nothing is sent."""
    if not url.startswith("https://"):
        raise BadRequest("the CES URL must be https://host/<CA>_CES_<Auth>/service.svc/CES")
    try:
        certs = load_certificates(ca_pem)
    except (BadRequest, *UNPARSEABLE):
        raise BadRequest("--upstream-ca-cert must be PEM certificates (the issuing CA and its chain)") from None
    if not certs:
        raise BadRequest("--upstream-ca-cert holds no certificate: pass the AD CS issuing CA (and its chain) as PEM")
    if trust_pem:
        ssl_context(trust_pem)  # a broken trust file now, not at the first enrollment
    return issuing_and_chain(list(certs))


def settings_for(ca_id: str, sealer: Sealer, *, url: str, username: str | None, password: str | None,
                 client_certificate_pem: str | None, client_key_pem: bytes | None,
                 trust_pem: str | None, template: str | None) -> dict[str, Any]:
    """The CA record's ``backend_settings``, with the password and key sealed to this CA."""
    if not url.startswith("https://"):
        raise BadRequest("the CES URL must be https://host/<CA>_CES_<Auth>/service.svc/CES")
    sealed = seal_credentials(ca_id, sealer, peer="CES upstream", username=username, password=password,
                              client_certificate_pem=client_certificate_pem, client_key_pem=client_key_pem)
    if username and client_certificate_pem:
        raise BadRequest("the CES upstream takes one authentication: a username and password, "
                         "or a client certificate")
    if template is not None and (not template.strip() or len(template) > 256):
        raise BadRequest("the certificate template name must be 1-256 characters")
    return {"url": url, "trust_pem": trust_pem, "template": template or None,
            "auth": "username" if username else "certificate", **sealed}
