"""The request tokens of MS-WSTEP and the CMC response that answers them.

A ``wsse:BinarySecurityToken`` in a RequestSecurityToken holds one of three forms
(MS-WSTEP 3.1.4.1.2.4; Windows labels even a bare PKCS#10 ``#PKCS7``, as the 4.1.1.1
example does, so the bytes decide, never the ValueType):

- a bare PKCS#10 CertificationRequest;
- a CMC Full PKI Request (RFC 5272 PKIData, eContentType id-cct-PKIData) in a SignedData,
  holding one TaggedCertificationRequest; signed either with the requested key (named by
  its subject key identifier: proof of possession again) or with a certificate;
- a PKCS#7 renewal: a SignedData whose content (id-data) is a PKCS#10 or a PKIData, or a
  SignedData of one of those (one level of nesting: Windows signs the inner request with
  the new key and the outer with the old certificate).

A SignedData signed by a certificate is verified here (RFC 5652 5.4, one SignerInfo)
and that certificate is returned as ``signer``: the caller decides whether it may renew
(ours, valid, not revoked: :mod:`protocols.windows.ces`).

The answer (:func:`pki_response`) is a CMC Full PKI Response (RFC 5272 3.2.2): a
SignedData of eContentType id-cct-PKIResponse whose CMCStatusInfo names the request's
bodyPartID, carrying the issued certificate and its chain, as AD CS returns it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from asn1crypto import cms, core, parser
from asn1crypto import csr as acsr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gateway.ca.builder import CsrPolicy, check_proof_of_possession, load_csr
from gateway.edge import cms as ecms
from gateway.edge import der
from gateway.errors import BadRequest

ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_CCT_PKI_DATA = "1.3.6.1.5.5.7.12.2"
ID_CCT_PKI_RESPONSE = "1.3.6.1.5.5.7.12.3"
ID_CMC_STATUS_INFO = "1.3.6.1.5.5.7.7.1"
ENROLLMENT_NAME_VALUE_PAIR = "1.3.6.1.4.1.311.13.2.1"
CMC_ADD_ATTRIBUTES = "1.3.6.1.4.1.311.10.10.1"
ISSUED_CERT_HASH = "1.3.6.1.4.1.311.21.17"

SUCCESS, FAILED, PENDING = 0, 2, 3
"""CMCStatus values (RFC 5272 6.1.1)."""
BAD_REQUEST_FAIL_INFO = 2  # CMCFailInfo badRequest

MAX_TOKEN_BYTES = 64 * 1024
MAX_BODY_PART_ID = 4294967295


class InvalidRequestToken(BadRequest):
    """The BinarySecurityToken is none of the three forms, or does not verify."""


# --- RFC 5272 structures -------------------------------------------------------------------


class _AnyValues(core.SetOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = core.Any


class TaggedAttribute(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("body_part_id", core.Integer),
        ("attr_type", core.ObjectIdentifier),
        ("attr_values", _AnyValues),
    ]


class _TaggedAttributes(core.SequenceOf):  # type: ignore[misc]
    _child_spec = TaggedAttribute


class _AnySequence(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Any


class PKIData(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("control_sequence", _TaggedAttributes),
        ("req_sequence", _AnySequence),  # TaggedRequest CHOICE, read by tag below
        ("cms_sequence", _AnySequence),
        ("other_msg_sequence", _AnySequence),
    ]


class TaggedCertificationRequest(core.Sequence):  # type: ignore[misc]
    _fields = [("body_part_id", core.Integer), ("certification_request", core.Any)]


class _BodyList(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Integer


class PendInfo(core.Sequence):  # type: ignore[misc]
    _fields = [("pend_token", core.OctetString), ("pend_time", core.GeneralizedTime)]


class _OtherInfo(core.Choice):  # type: ignore[misc]
    _alternatives = [("fail_info", core.Integer), ("pend_info", PendInfo)]


class CMCStatusInfo(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("cmc_status", core.Integer),
        ("body_list", _BodyList),
        ("status_string", core.UTF8String, {"optional": True}),
        ("other_info", _OtherInfo, {"optional": True}),
    ]


class PKIResponse(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("control_sequence", _TaggedAttributes),
        ("cms_sequence", _AnySequence),
        ("other_msg_sequence", _AnySequence),
    ]


class _CertReferences(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Integer


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", _AnyValues)]


class _Attributes(core.SetOf):  # type: ignore[misc]
    _child_spec = _Attribute


class CmcAddAttributesInfo(core.Sequence):  # type: ignore[misc]
    """Microsoft's CMC control (szOID_CMC_ADD_ATTRIBUTES): attributes for body parts."""

    _fields = [
        ("data_reference", core.Integer),
        ("cert_reference", _CertReferences),
        ("attributes", _Attributes),
    ]


class EnrollmentNameValuePair(core.Sequence):  # type: ignore[misc]
    _fields = [("name", core.BMPString), ("value", core.BMPString)]


# --- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestToken:
    """What a BinarySecurityToken asked for."""

    form: str  # "pkcs10" | "cmc" | "pkcs7"
    csr: x509.CertificateSigningRequest
    body_part_id: int | None = None  # of the TaggedCertificationRequest (CMC)
    signer: x509.Certificate | None = None  # verified signer certificate (a renewal)
    name_values: tuple[tuple[str, str], ...] = ()  # enrollment name-value pairs (CertificateTemplate, ...)


def parse_request_token(data: bytes, policy: CsrPolicy = CsrPolicy()) -> RequestToken:
    """One of the three forms (module docstring), with every signature checked; ``policy``
    is the configuration's (SHA-1 and legacy subject strings in the PKCS#10, as Windows
    writes them)."""
    if not data:
        raise InvalidRequestToken("the BinarySecurityToken is empty")
    if len(data) > MAX_TOKEN_BYTES:
        raise InvalidRequestToken("the BinarySecurityToken is too large")
    if classify(data) == "pkcs10":
        csr = _csr(data, policy)
        return RequestToken("pkcs10", csr, name_values=_csr_name_values(csr))
    return _signed(data, 0, policy)


def classify(data: bytes) -> str:
    """``pkcs10`` or ``cms``, by the bytes: a CertificationRequest is SEQUENCE { SEQUENCE
    {...} ...}, a ContentInfo SEQUENCE { OBJECT IDENTIFIER, [0] ... }."""
    try:
        cls, constructed, tag, _, contents, _ = parser.parse(data, strict=True)
        first_cls, _, first_tag, _, _, _ = parser.parse(contents)
    except (ValueError, TypeError):
        raise InvalidRequestToken("the BinarySecurityToken is not DER") from None
    if (cls, constructed, tag) == (0, 1, 16) and (first_cls, first_tag) == (0, 16):
        return "pkcs10"
    if (cls, constructed, tag) == (0, 1, 16) and (first_cls, first_tag) == (0, 6):
        return "cms"
    raise InvalidRequestToken("the BinarySecurityToken is neither a PKCS#10 nor a CMS ContentInfo")


def _is_csr(data: bytes) -> bool:
    try:
        return classify(data) == "pkcs10"
    except InvalidRequestToken:
        return False


def _csr(data: bytes, policy: CsrPolicy) -> x509.CertificateSigningRequest:
    csr = load_csr(data, legacy_strings=policy.legacy_strings)
    check_proof_of_possession(csr, policy)
    return csr


def _signed(data: bytes, depth: int, policy: CsrPolicy) -> RequestToken:
    try:
        info = ecms.load_content_info(data, "request token")
    except ecms.CmsError as exc:
        raise InvalidRequestToken(f"the BinarySecurityToken is neither a PKCS#10 nor a CMS SignedData: {exc.detail}") from None
    if info["content_type"].dotted != ID_SIGNED_DATA:
        raise InvalidRequestToken("the BinarySecurityToken's CMS content is not a SignedData")
    signed = info["content"]
    eci = signed["encap_content_info"]
    content_type = eci["content_type"].dotted
    content = eci["content"]
    if not isinstance(content, core.Void) and content.native is not None:
        inner = bytes(content.native)
    else:
        raise InvalidRequestToken("the SignedData carries no content (detached signatures are not accepted)")
    try:
        certificates = ecms.embedded_certificates(signed)
    except ecms.CmsError as exc:
        raise InvalidRequestToken(exc.detail) from None
    signer_infos = list(signed["signer_infos"])
    if len(signer_infos) != 1:
        raise InvalidRequestToken("the SignedData must carry exactly one SignerInfo")
    signer_info = signer_infos[0]

    body_part_id: int | None
    if content_type == ID_CCT_PKI_DATA:
        csr, body_part_id, pairs = _pki_data(inner, policy)
        form = "cmc"
    elif content_type == ID_DATA:
        if _looks_like_content_info(inner):
            if depth > 0:
                raise InvalidRequestToken("request SignedData nested more than two deep")
            nested = _signed(inner, depth + 1, policy)
            csr, body_part_id, pairs = nested.csr, nested.body_part_id, nested.name_values
            if nested.signer is not None:
                raise InvalidRequestToken("the inner SignedData must be signed with the requested key")
        elif _is_csr(inner):
            csr, body_part_id = _csr(inner, policy), None
            pairs = _csr_name_values(csr)
        else:
            csr, body_part_id, pairs = _pki_data(inner, policy)
        form = "pkcs7"
    else:
        raise InvalidRequestToken(f"a request SignedData of content type {content_type} is not supported")

    signer = _verify(signer_info, certificates, csr, inner)
    return RequestToken(form, csr, body_part_id, signer, pairs)


def _looks_like_content_info(data: bytes) -> bool:
    try:
        return classify(data) == "cms"
    except InvalidRequestToken:
        return False


def _verify(signer_info: cms.SignerInfo, certificates: list[x509.Certificate],
            csr: x509.CertificateSigningRequest, content: bytes) -> x509.Certificate | None:
    """The certificate that signed (verified), or None when the requested key signed."""
    sid = signer_info["sid"]
    for cert in certificates:
        if ecms.matches_identifier(cert, sid):
            _check_signature(signer_info, cert, content)
            return cert
    if sid.name == "subject_key_identifier" and sid.chosen.native in _key_identifiers(csr):
        _check_signature(signer_info, csr.public_key(), content)
        return None
    raise InvalidRequestToken("the request SignedData's signer is neither an enclosed certificate nor the requested key")


def _check_signature(signer_info: cms.SignerInfo, signer: object, content: bytes) -> None:
    try:
        ecms.verify_signer_info(signer_info, signer, content, "request SignedData")
    except ecms.CmsError as exc:
        raise InvalidRequestToken(exc.detail) from None
    except (ValueError, TypeError, KeyError, UnsupportedAlgorithm):
        # a signer key cryptography cannot load, an algorithm asn1crypto cannot name
        raise InvalidRequestToken("the request SignedData's signature cannot be checked") from None


def _key_identifiers(csr: x509.CertificateSigningRequest) -> set[bytes]:
    """The identifiers a client may name the requested key by: RFC 5280 method 1 (SHA-1
    of the subjectPublicKey bits, what Windows uses) and the CSR's own SKI extension."""
    out = {x509.SubjectKeyIdentifier.from_public_key(csr.public_key()).digest}
    try:
        out.add(csr.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    except x509.ExtensionNotFound:
        pass
    return out


def _pki_data(data: bytes, policy: CsrPolicy) -> tuple[x509.CertificateSigningRequest, int, tuple[tuple[str, str], ...]]:
    try:
        pki = PKIData.load(data, strict=True)
        controls = list(pki["control_sequence"])
        requests = der.children(pki["req_sequence"].dump())
        for control in controls:  # decode the structure now: bad bytes fail here, not later
            _ = control["body_part_id"].native, control["attr_type"].dotted, list(control["attr_values"])
        nested = der.children(pki["cms_sequence"].dump())
        _ = list(pki["other_msg_sequence"])
    except (ValueError, TypeError, KeyError):
        raise InvalidRequestToken("the CMC request is not an RFC 5272 PKIData") from None
    if nested:
        raise InvalidRequestToken("nested CMC requests (cmsSequence) are not supported")
    if len(requests) != 1:
        raise InvalidRequestToken("a CMC request must carry exactly one certificate request")
    try:
        cls, constructed, tag, _, contents, _ = parser.parse(requests[0], strict=True)
    except (ValueError, TypeError):
        raise InvalidRequestToken("the CMC TaggedRequest does not parse") from None
    if (cls, constructed, tag) != (2, 1, 0):
        raise InvalidRequestToken("only PKCS#10 requests (TaggedCertificationRequest) are supported in CMC")
    try:
        tcr = TaggedCertificationRequest.load(der.tlv(0x30, bytes(contents)), strict=True)
        body_part_id = int(tcr["body_part_id"].native)
        csr_der = tcr["certification_request"].dump()
    except (ValueError, TypeError):
        raise InvalidRequestToken("the CMC TaggedCertificationRequest does not parse") from None
    if not 0 <= body_part_id <= MAX_BODY_PART_ID:
        raise InvalidRequestToken("the CMC bodyPartID is out of range")
    csr = _csr(csr_der, policy)
    pairs = list(_csr_name_values(csr))
    for control in controls:
        pairs.extend(_control_name_values(control))
    return csr, body_part_id, tuple(pairs)


def _pair(value: core.Asn1Value) -> tuple[str, str] | None:
    try:
        pair = EnrollmentNameValuePair.load(value.dump(), strict=True)
        return str(pair["name"].native), str(pair["value"].native)
    except (ValueError, TypeError):
        return None


def _csr_name_values(csr: x509.CertificateSigningRequest) -> tuple[tuple[str, str], ...]:
    """``szOID_ENROLLMENT_NAME_VALUE_PAIR`` attributes of the CSR (e.g. CertificateTemplate)."""
    out: list[tuple[str, str]] = []
    try:
        info = acsr.CertificationRequest.load(csr.public_bytes(serialization.Encoding.DER))
        for attr in info["certification_request_info"]["attributes"]:
            if attr["type"].dotted == ENROLLMENT_NAME_VALUE_PAIR:
                for value in attr["values"]:
                    found = _pair(value)
                    if found is not None:
                        out.append(found)
    except (ValueError, TypeError, KeyError):
        return ()
    return tuple(out)


def _control_name_values(control: TaggedAttribute) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    kind = control["attr_type"].dotted
    for value in control["attr_values"]:
        if kind == ENROLLMENT_NAME_VALUE_PAIR:
            found = _pair(value)
            if found is not None:
                out.append(found)
        elif kind == CMC_ADD_ATTRIBUTES:
            try:
                add = CmcAddAttributesInfo.load(value.dump(), strict=True)
                for attr in add["attributes"]:
                    if attr["type"].dotted == ENROLLMENT_NAME_VALUE_PAIR:
                        for inner in attr["values"]:
                            found = _pair(inner)
                            if found is not None:
                                out.append(found)
            except (ValueError, TypeError, KeyError):
                continue
    return out


# --- building ------------------------------------------------------------------------------


def _status_info(status: int, body_part_id: int, text: str | None, *, fail_info: int | None = None,
                 pend_token: bytes | None = None, pend_time: dt.datetime | None = None) -> CMCStatusInfo:
    fields: dict[str, object] = {"cmc_status": status, "body_list": [body_part_id]}
    if text is not None:
        fields["status_string"] = text
    if fail_info is not None:
        fields["other_info"] = _OtherInfo({"fail_info": fail_info})
    elif pend_token is not None and pend_time is not None:
        fields["other_info"] = _OtherInfo({"pend_info": PendInfo({"pend_token": pend_token, "pend_time": pend_time})})
    return CMCStatusInfo(fields)


def response_content(status: int, body_part_id: int, text: str | None, *,
                     issued: x509.Certificate | None = None, fail_info: int | None = None,
                     pend_token: bytes | None = None, pend_time: dt.datetime | None = None) -> bytes:
    """The DER PKIResponse: a CMCStatusInfo for ``body_part_id`` and, when a certificate
    was issued, Microsoft's issued-certificate-hash attribute (what AD CS adds)."""
    controls = [TaggedAttribute({
        "body_part_id": 1,
        "attr_type": ID_CMC_STATUS_INFO,
        "attr_values": [_status_info(status, body_part_id, text, fail_info=fail_info,
                                     pend_token=pend_token, pend_time=pend_time)],
    })]
    if issued is not None:
        digest = hashlib.sha1(issued.public_bytes(serialization.Encoding.DER)).digest()  # noqa: S324 - MS's format
        add = CmcAddAttributesInfo({
            "data_reference": 0,
            "cert_reference": [1],
            "attributes": [_Attribute({"type": ISSUED_CERT_HASH, "values": [core.OctetString(digest)]})],
        })
        controls.append(TaggedAttribute({"body_part_id": 2, "attr_type": CMC_ADD_ATTRIBUTES, "attr_values": [add]}))
    return bytes(PKIResponse({"control_sequence": controls, "cms_sequence": [], "other_msg_sequence": []}).dump())


def pki_response(content: bytes, certificates: list[x509.Certificate], *, signer: ecms.Signer | None,
                 signing_time: dt.datetime) -> bytes:
    """The DER ContentInfo/SignedData (eContentType id-cct-PKIResponse) around ``content``
    (:func:`response_content`), carrying ``certificates`` (issued certificate, then its
    chain). Signed by ``signer``, whose certificate is carried too so the signature can be
    checked; without one, a SignedData with no SignerInfos (the degenerate form, which
    clients read for the certificates)."""
    if signer is not None:
        return ecms.sign(content, signer, digest_name="sha256", signing_time=signing_time,
                         certificates=[*certificates, signer.certificate], content_type=ID_CCT_PKI_RESPONSE)
    signed = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": ID_CCT_PKI_RESPONSE, "content": content},
        "certificates": ecms.certificate_set(certificates),
        "signer_infos": [],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def read_pki_response(data: bytes) -> tuple[list[tuple[int, list[int], str | None]], list[x509.Certificate]]:
    """(status, bodyList, statusString) of each CMCStatusInfo, and the certificates: for
    tests and the conformance simulator, which read what Windows reads."""
    info = ecms.load_content_info(data, "CMC response")
    signed = info["content"]
    eci = signed["encap_content_info"]
    if eci["content_type"].dotted != ID_CCT_PKI_RESPONSE:
        raise InvalidRequestToken("not a CMC PKIResponse")
    response = PKIResponse.load(bytes(eci["content"].native), strict=True)
    statuses = []
    for control in response["control_sequence"]:
        if control["attr_type"].dotted == ID_CMC_STATUS_INFO:
            for value in control["attr_values"]:
                status = CMCStatusInfo.load(value.dump(), strict=True)
                text = status["status_string"].native
                statuses.append((int(status["cmc_status"].native),
                                 [int(b) for b in status["body_list"].native],
                                 None if text is None else str(text)))
    return statuses, ecms.embedded_certificates(signed)
