"""Proof of possession: a CSR must be signed by the key it asks to have certified.

The strict rule is cryptography's own check (``is_signature_valid``), which refuses SHA-1.
A protocol configuration may relax two things, explicitly, through
:class:`~gateway.ca.backend.CsrPolicy` (carried in the enroll request's overrides):

- ``sha1_signatures``: RSA PKCS#1 v1.5 with SHA-1, under either OID Windows uses
  (``sha1WithRSAEncryption`` and OIW's ``sha1WithRSASignature``), verified here by hand
  over the CertificationRequestInfo bytes. Windows certenroll and the MDM client sign
  requests so, and AD CS accepts them.
- ``legacy_strings``: a subject PrintableString holding characters PrintableString does
  not allow (the Windows MDM client writes ``!`` and a trailing NUL) makes the CSR
  unparseable; :func:`repair_legacy_strings` retags such strings as UTF8String (same
  bytes, same length, so the rest of the DER is untouched), and the check below accepts
  the repaired CSR when the signature verifies over the original tagging (the exact
  inverse, restored here), i.e. over the bytes the key holder signed.

Everything else (the key must sign, the signature must verify) stays as it is.
"""

from __future__ import annotations

from asn1crypto import parser
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from ..errors import BadSignature
from .backend import CsrPolicy

SHA1_WITH_RSA = frozenset({"1.2.840.113549.1.1.5", "1.3.14.3.2.29"})
"""sha1WithRSAEncryption (PKCS#1) and sha1WithRSASignature (OIW, what the MDM client writes)."""

_RSA_PKCS1: dict[str, type[hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.5": hashes.SHA1, "1.3.14.3.2.29": hashes.SHA1,
    "1.2.840.113549.1.1.14": hashes.SHA224, "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384, "1.2.840.113549.1.1.13": hashes.SHA512,
}
_ECDSA: dict[str, type[hashes.HashAlgorithm]] = {
    "1.2.840.10045.4.3.1": hashes.SHA224, "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384, "1.2.840.10045.4.3.4": hashes.SHA512,
}
_EDDSA = {"1.3.101.112", "1.3.101.113"}

_PRINTABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
_PRINTABLE_STRING, _UTF8_STRING = 0x13, 0x0C


def check_proof_of_possession(csr: x509.CertificateSigningRequest, policy: CsrPolicy = CsrPolicy()) -> None:
    """The CSR must be signed by the key it certifies; ``policy`` says what else is accepted."""
    oid = csr.signature_algorithm_oid.dotted_string
    sha1 = oid in SHA1_WITH_RSA
    if sha1 and not policy.sha1_signatures:
        raise BadSignature("certificate request signed with SHA-1, which this configuration does not accept")
    if not sha1 and _library_check(csr):
        return
    tbs = csr.tbs_certrequest_bytes
    if sha1 and _verifies(csr, oid, tbs):
        return
    if policy.legacy_strings:
        original = _restore_legacy_strings(tbs)
        if original != tbs and _verifies(csr, oid, original):
            return
    raise BadSignature("certificate request signature does not verify")


def _library_check(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError):
        raise BadSignature("certificate request signature algorithm not supported") from None


def _verifies(csr: x509.CertificateSigningRequest, oid: str, data: bytes) -> bool:
    """The signature over ``data`` by the CSR's own key (RSA PKCS#1 v1.5, ECDSA, EdDSA)."""
    try:
        key = csr.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return False
    signature = csr.signature
    try:
        if oid in _RSA_PKCS1 and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), _RSA_PKCS1[oid]())
        elif oid in _ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(_ECDSA[oid]()))
        elif oid in _EDDSA and isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


# --- legacy subject strings ------------------------------------------------------------------


def repair_legacy_strings(der: bytes) -> bytes:
    """A CertificationRequest whose subject PrintableStrings hold other ASCII characters,
    with those strings retagged UTF8String; ``der`` unchanged when there are none."""
    return _retag(der, _PRINTABLE_STRING, _UTF8_STRING, request=True)


def _restore_legacy_strings(tbs: bytes) -> bytes:
    """The inverse of :func:`repair_legacy_strings` on a CertificationRequestInfo."""
    return _retag(tbs, _UTF8_STRING, _PRINTABLE_STRING, request=False)


def _retag(data: bytes, old: int, new: int, *, request: bool) -> bytes:
    """Flip the tag byte of each subject attribute value tagged ``old`` whose content is
    ASCII but not PrintableString. Tag and length stay one byte each way, so every other
    offset holds; anything that does not parse is returned as it is (the caller's own
    parser refuses it)."""
    try:
        offset = 0
        if request:  # CertificationRequest ::= SEQUENCE { certificationRequestInfo, ... }
            _, _, _, header, _, _ = parser.parse(data, strict=True)
            offset = len(header)
            info = data[offset:]
            parser.parse(info)
        else:
            info = data
        _, _, _, info_header, info_body, _ = parser.parse(info)
        pos = offset + len(info_header)
        _, _, _, v_header, v_body, _ = parser.parse(info_body)  # version INTEGER
        pos += len(v_header) + len(v_body)
        name = data[pos:]
        _, _, tag, n_header, n_body, _ = parser.parse(name)
        if tag != 16:
            return data
        flips = []
        base = pos + len(n_header)
        rdn_at = 0
        while rdn_at < len(n_body):  # RDNSequence: SET OF AttributeTypeAndValue
            _, _, _, r_header, r_body, r_rest = parser.parse(n_body[rdn_at:])
            atv_at = 0
            while atv_at < len(r_body):
                _, _, _, a_header, a_body, _ = parser.parse(r_body[atv_at:])
                _, _, _, t_header, t_body, _ = parser.parse(a_body)  # the attribute type OID
                value_at = len(t_header) + len(t_body)
                cls, constructed, vtag, _, content, _ = parser.parse(a_body[value_at:])
                if cls == 0 and not constructed and vtag == old and _legacy(content):
                    flips.append(base + rdn_at + len(r_header) + atv_at + len(a_header) + value_at)
                atv_at += len(a_header) + len(a_body)
            rdn_at += len(r_header) + len(r_body)
    except (ValueError, TypeError):
        return data
    if not flips:
        return data
    out = bytearray(data)
    for at in flips:
        out[at] = new
    return bytes(out)


def _legacy(content: bytes) -> bool:
    return all(b < 0x80 for b in content) and not all(b in _PRINTABLE for b in content)
