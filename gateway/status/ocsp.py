"""RFC 6960 OCSP responder core: parse requests, build signed responses. No I/O,
except that a response signed by a CA key in a token is signed by the token (blocking:
callers run :func:`build_response` off the event loop for such a key).

asn1crypto does the ASN.1 in both directions because cryptography's OCSP API
refuses requests that ask about several certificates at once; cryptography
still does every signature and verification.
"""

from __future__ import annotations

from asn1crypto import algos as algorithms

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from asn1crypto import core
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..ca.backend import RevocationReason
from ..errors import BadRequest, GatewayError
from ..ca.signer import IssuerKey, TokenKey, sign_certificate, token_signature
from ..keys import signature_hash_for

CERT_ID_HASHES = ("sha1", "sha256", "sha384", "sha512")
"""Hash algorithms a CertID may use that :func:`matches_issuer` understands."""

_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)
_UNDERSTOOD_EXTENSIONS = {"nonce", "acceptable_responses"}  # we always answer id-pkix-ocsp-basic
_HASHES = {"sha1": hashes.SHA1(), "sha224": hashes.SHA224(), "sha256": hashes.SHA256(),
           "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}
_ERROR_STATUSES = {
    "malformed_request": 1,
    "internal_error": 2,
    "try_later": 3,
    "sig_required": 5,
    "sign_required": 5,
    "unauthorized": 6,
}


@dataclass(frozen=True)
class CertId:
    """Which certificate a client asks about (RFC 6960 4.1.1 CertID)."""

    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_algorithm: str  # "sha1", "sha256", ... or a dotted OID when unknown
    serial: int


@dataclass(frozen=True)
class ParsedOCSPRequest:
    cert_ids: tuple[CertId, ...]
    nonce: bytes | None
    """The nonce extension's extnValue contents exactly as sent, for a byte-exact echo."""
    signed: bool
    requestor_certs: tuple[x509.Certificate, ...]
    signature_valid: bool | None
    """None when unsigned; False when signed but unverifiable (no certificate, odd algorithm).
    Whether the requestor certificate is trusted is the caller's decision."""


@dataclass(frozen=True)
class SingleStatus:
    cert_id: CertId
    status: Literal["good", "revoked", "unknown"]
    revoked_at: dt.datetime | None
    reason: RevocationReason | None
    this_update: dt.datetime
    next_update: dt.datetime | None


@dataclass(frozen=True)
class ResponderIdentity:
    """Who signs responses: a delegated OCSP signing certificate, or the CA itself (with
    its key in this process or in a token)."""

    certificate: x509.Certificate
    private_key: IssuerKey
    extra_certs: tuple[x509.Certificate, ...] = ()


def parse_request(der: bytes) -> ParsedOCSPRequest:
    """Strictly parse a DER OCSPRequest; anything malformed is a :class:`BadRequest`."""
    try:
        request = asn1_ocsp.OCSPRequest.load(der, strict=True)
        tbs = request["tbs_request"]
        if tbs["version"].native != "v1":
            raise BadRequest("unsupported OCSP request version")
        tbs["requestor_name"].native  # parse now so garbage there is refused too
        cert_ids = tuple(_cert_id(item["req_cert"]) for item in tbs["request_list"])
        for item in tbs["request_list"]:
            _check_extensions(item["single_request_extensions"], set())
        nonce = _check_extensions(tbs["request_extensions"], _UNDERSTOOD_EXTENSIONS)
        signature = request["optional_signature"]
        signed = signature.native is not None
        certs: tuple[x509.Certificate, ...] = ()
        valid: bool | None = None
        if signed:
            certs = tuple(x509.load_der_x509_certificate(c.dump()) for c in signature["certs"] or ())
            valid = bool(certs) and _verify(
                certs[0].public_key(), signature["signature_algorithm"],
                signature["signature"].native, tbs.dump(),
            )
    except BadRequest:
        raise
    except _PARSE_ERRORS as exc:
        raise BadRequest("malformed OCSP request") from exc
    if not cert_ids:
        raise BadRequest("OCSP request lists no certificates")
    return ParsedOCSPRequest(cert_ids, nonce, signed, certs, valid)


def matches_issuer(cert_id: CertId, issuer_cert: x509.Certificate) -> bool:
    """Whether ``cert_id`` names a certificate issued by ``issuer_cert`` (RFC 6960 4.1.1)."""
    if cert_id.hash_algorithm not in CERT_ID_HASHES:
        return False
    cert = asn1_x509.Certificate.load(issuer_cert.public_bytes(Encoding.DER))
    name_hash = hashlib.new(cert_id.hash_algorithm, cert.subject.dump()).digest()
    key_hash = hashlib.new(cert_id.hash_algorithm, _public_key_bits(issuer_cert.public_key())).digest()
    return name_hash == cert_id.issuer_name_hash and key_hash == cert_id.issuer_key_hash


def build_response(
    *,
    responder: ResponderIdentity,
    statuses: Sequence[SingleStatus],
    nonce: bytes | None,
    produced_at: dt.datetime,
) -> bytes:
    """A signed, successful BasicOCSPResponse with one SingleResponse per status, in order."""
    extensions = None
    if nonce is not None:
        extensions = [{"extn_id": "nonce", "critical": False,
                       "extn_value": core.ParsableOctetString(nonce)}]
    tbs = asn1_ocsp.ResponseData({
        "responder_id": asn1_ocsp.ResponderId(
            name="by_key", value=hashlib.sha1(_public_key_bits(responder.certificate.public_key())).digest()
        ),
        "produced_at": _utc(produced_at),
        "responses": [_single_response(s) for s in statuses],
        "response_extensions": extensions,
    })
    algorithm, signature = _sign(responder.private_key, tbs.dump())
    basic = asn1_ocsp.BasicOCSPResponse({
        "tbs_response_data": tbs,
        "signature_algorithm": algorithm,
        "signature": signature,
        "certs": [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in responder.extra_certs]
        or None,
    })
    der: bytes = asn1_ocsp.OCSPResponse({
        "response_status": "successful",
        "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
    }).dump()
    return der


def error_response(status: str) -> bytes:
    """An unsigned OCSPResponse carrying only an error status (RFC 6960 2.3)."""
    code = _ERROR_STATUSES.get(status)
    if code is None:
        raise GatewayError(f"unknown OCSP error status {status!r}")
    der: bytes = asn1_ocsp.OCSPResponse({"response_status": code}).dump()
    return der


def build_ocsp_signing_certificate(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    responder_key: CertificateIssuerPrivateKeyTypes | CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A delegated responder certificate (RFC 6960 4.2.2.2) with id-pkix-ocsp-nocheck."""
    public_key = responder_key.public_key() if hasattr(responder_key, "public_key") else responder_key
    cns = issuer_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer_cn = str(cns[0].value) if cns else issuer_cert.subject.rfc4514_string()
    ski = hashlib.sha256(_public_key_bits(public_key)).digest()[:20]  # RFC 7093 method 1
    try:
        issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{issuer_cn} OCSP Responder")]))
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
        .add_extension(aki, critical=False)
    )
    return sign_certificate(builder, issuer_key)


def _cert_id(value: asn1_ocsp.CertId) -> CertId:
    # An OID with non-minimal sub-identifiers (leading 0x80 octets) loads, but its dotted form
    # has empty arcs and cannot be encoded again for the response: refuse it here (ValueError).
    algorithms.DigestAlgorithmId(value["hash_algorithm"]["algorithm"].dotted)
    return CertId(
        issuer_name_hash=value["issuer_name_hash"].native,
        issuer_key_hash=value["issuer_key_hash"].native,
        hash_algorithm=value["hash_algorithm"]["algorithm"].native,
        serial=value["serial_number"].native,
    )


def _check_extensions(extensions: core.Asn1Value, known: set[str]) -> bytes | None:
    """Reject unknown critical extensions (RFC 6960 4.4); return the raw nonce, if any."""
    nonce = None
    for ext in extensions or ():
        name = ext["extn_id"].native
        if ext["critical"].native and name not in known:
            raise BadRequest(f"unsupported critical OCSP extension {ext['extn_id'].dotted}")
        if name == "nonce":
            if nonce is not None:
                raise BadRequest("OCSP request carries two nonces")
            nonce = ext["extn_value"].contents
    return nonce


def _verify(key: CertificatePublicKeyTypes, algorithm: core.Asn1Value, signature: bytes, data: bytes) -> bool:
    """Check the requestor's signature; unsupported combinations simply do not verify."""
    digest = _HASHES.get(algorithm.hash_algo)
    try:
        kind = algorithm.signature_algo
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey) and digest:
            key.verify(signature, data, padding.PKCS1v15(), digest)
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey) and digest:
            key.verify(signature, data, ec.ECDSA(digest))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def _sign(key: IssuerKey, data: bytes) -> tuple[dict[str, object], bytes]:
    """Sign ``data`` the way the key's strength asks; return (AlgorithmIdentifier, signature).
    A token key signs the ResponseData bytes built here, as it signs a certificate's TBS."""
    if isinstance(key, TokenKey):
        family, hashed, signature = token_signature(key, data)
        if family == "rsa":
            return {"algorithm": f"{hashed.name}_rsa", "parameters": core.Null()}, signature
        return {"algorithm": f"{hashed.name}_ecdsa"}, signature
    digest = signature_hash_for(key)
    if isinstance(key, rsa.RSAPrivateKey) and digest is not None:
        # RFC 4055: PKCS#1 v1.5 AlgorithmIdentifiers carry explicit NULL parameters.
        return ({"algorithm": f"{digest.name}_rsa", "parameters": core.Null()},
                key.sign(data, padding.PKCS1v15(), digest))
    if isinstance(key, ec.EllipticCurvePrivateKey) and digest is not None:
        return {"algorithm": f"{digest.name}_ecdsa"}, key.sign(data, ec.ECDSA(digest))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": "ed25519"}, key.sign(data)
    raise GatewayError(f"cannot sign OCSP responses with a {type(key).__name__}")


def _single_response(status: SingleStatus) -> asn1_ocsp.SingleResponse:
    cid = status.cert_id
    if status.status == "revoked":
        if status.revoked_at is None:
            raise GatewayError("a revoked OCSP status needs its revocation time")
        info: dict[str, object] = {"revocation_time": _utc(status.revoked_at)}
        # As on the CRL, "unspecified" is expressed by omitting the reason.
        if status.reason is not None and status.reason != RevocationReason.unspecified:
            info["revocation_reason"] = int(status.reason)
        cert_status = asn1_ocsp.CertStatus(name="revoked", value=info)
    elif status.status in ("good", "unknown"):
        cert_status = asn1_ocsp.CertStatus(name=status.status, value=core.Null())
    else:
        raise GatewayError(f"unknown OCSP certificate status {status.status!r}")
    return asn1_ocsp.SingleResponse({
        "cert_id": {
            "hash_algorithm": {"algorithm": cid.hash_algorithm, "parameters": core.Null()},
            "issuer_name_hash": cid.issuer_name_hash,
            "issuer_key_hash": cid.issuer_key_hash,
            "serial_number": cid.serial,
        },
        "cert_status": cert_status,
        "this_update": _utc(status.this_update),
        "next_update": _utc(status.next_update) if status.next_update is not None else None,
    })


def _public_key_bits(key: CertificatePublicKeyTypes) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits octet)."""
    spki = asn1_keys.PublicKeyInfo.load(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    contents: bytes = spki["public_key"].contents
    return contents[1:]


def _utc(value: dt.datetime) -> dt.datetime:
    """GeneralizedTime in DER: UTC, whole seconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)
