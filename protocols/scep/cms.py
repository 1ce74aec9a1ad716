"""CMS SignedData as SCEP uses it: strict parsing, signer verification, signing, and the
degenerate certificates-only form.

Built on asn1crypto (schemas) and ``cryptography`` (primitives) because SCEP needs what
``cryptography``'s PKCS#7 helpers do not offer: arbitrary signed attributes, SHA-1 for
old clients, and verification of a SignerInfo against a certificate we choose.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .types import FailInfo, MalformedMessage, ScepFailure

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""Message digests accepted in requests and used in responses (MD5 is refused as badAlg)."""


def load_content_info(data: bytes, what: str = "pkiMessage") -> cms.ContentInfo:
    """Parse a DER (or BER) ContentInfo strictly: trailing bytes or bad structure raise."""
    try:
        info = cms.ContentInfo.load(data, strict=True)
        content = info["content"]
        if info["content_type"].native == "signed_data":
            # Decode everything now, not lazily, so bad bytes fail here as MalformedMessage;
            # but embedded certificates only down to their structure: cryptography parses
            # them strictly where they are used, and asn1crypto's native form of a
            # certificate was 80% of this function's cost (about 1.1 ms per request).
            for name in ("version", "digest_algorithms", "encap_content_info", "signer_infos"):
                _ = content[name].native
            certificates = content["certificates"]
            if not isinstance(certificates, core.Void):
                for choice in certificates:
                    _ = choice.name, choice.chosen.contents
        else:
            _ = content.native
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedMessage(f"{what} is not a CMS ContentInfo") from exc
    return info


def hash_for(digest_name: str) -> hashes.HashAlgorithm:
    """The hash for an asn1crypto digest algorithm name; unknown or weak ones are badAlg."""
    cls = DIGESTS.get(digest_name)
    if cls is None:
        raise ScepFailure(FailInfo.BAD_ALG, f"digest algorithm {digest_name} is not supported")
    return cls()


def _cert_from_choice(choice: cms.CertificateChoices) -> x509.Certificate | None:
    if choice.name != "certificate":
        return None  # attribute or other certificates: never signers
    return x509.load_der_x509_certificate(choice.chosen.dump())


def embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    certs = signed_data["certificates"]
    out: list[x509.Certificate] = []
    if isinstance(certs, core.Void):  # absent (not .native: that decodes every certificate)
        return out
    for choice in certs:
        try:
            cert = _cert_from_choice(choice)
        except ValueError as exc:
            raise MalformedMessage("an embedded certificate does not parse") from exc
        if cert is not None:
            out.append(cert)
    return out


def matches_identifier(cert: x509.Certificate, sid: cms.SignerIdentifier | cms.RecipientIdentifier) -> bool:
    """Does ``cert`` answer to an IssuerAndSerialNumber or SubjectKeyIdentifier reference?"""
    if sid.name == "issuer_and_serial_number":
        ias = sid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        tbs = _asn1_cert(cert)["tbs_certificate"]  # asn1crypto names: RFC 5280 comparison
        return bool(ias["issuer"] == tbs["issuer"])
    if sid.name == "subject_key_identifier":
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            return False
        return bool(sid.chosen.native == ski)
    return False


def signed_attributes_der(signer_info: cms.SignerInfo) -> bytes:
    """The bytes a SignerInfo signature covers: the signed attributes re-tagged as a SET."""
    attrs = signer_info["signed_attrs"]
    contents = attrs.contents
    return b"\x31" + _der_length(len(contents)) + contents


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def attribute_values(signer_info: cms.SignerInfo, oid: str) -> list[core.Asn1Value]:
    """Values of the signed attribute with this OID (empty list when absent)."""
    attrs = signer_info["signed_attrs"]
    if attrs.native is None:
        return []
    found: list[core.Asn1Value] = []
    for attr in attrs:
        if attr["type"].dotted == oid:
            found.extend(attr["values"])
    return found


def verify_signature(
    public_key: object, signature: bytes, data: bytes, signature_algorithm: algos.SignedDigestAlgorithm,
    digest: hashes.HashAlgorithm,
) -> None:
    """Check a CMS signature with the signer's public key; bad ones are badMessageCheck."""
    algo = signature_algorithm.signature_algo
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            if algo == "rsassa_pss":
                params = signature_algorithm["parameters"]
                pss_hash = hash_for(params["hash_algorithm"]["algorithm"].native)
                mgf_hash = hash_for(params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
                public_key.verify(
                    signature, data,
                    padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=params["salt_length"].native),
                    pss_hash,
                )
            elif algo == "rsassa_pkcs1v15":
                public_key.verify(signature, data, padding.PKCS1v15(), digest)
            else:
                raise ScepFailure(FailInfo.BAD_ALG, f"signature algorithm {algo} does not fit an RSA key")
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if algo != "ecdsa":
                raise ScepFailure(FailInfo.BAD_ALG, f"signature algorithm {algo} does not fit an EC key")
            public_key.verify(signature, data, ec.ECDSA(digest))
        else:
            raise ScepFailure(FailInfo.BAD_ALG, "the signer's key type is not supported")
    except InvalidSignature:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "the pkiMessage signature does not verify") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ScepFailure(FailInfo.BAD_ALG, "the pkiMessage signature algorithm is not supported") from exc


def signature_digest(signer_info: cms.SignerInfo) -> hashes.HashAlgorithm:
    """The message digest a SignerInfo uses (its digestAlgorithm)."""
    return hash_for(signer_info["digest_algorithm"]["algorithm"].native)


def verify_signer_info(signer_info: cms.SignerInfo, cert: x509.Certificate, content: bytes) -> None:
    """RFC 5652 section 5.4: messageDigest must match the content, the signature the attributes."""
    digest = signature_digest(signer_info)
    if signer_info["signed_attrs"].native is None:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "a pkiMessage must carry signed attributes")
    digests = attribute_values(signer_info, "1.2.840.113549.1.9.4")
    if len(digests) != 1:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "the messageDigest attribute is missing")
    h = hashes.Hash(digest)
    h.update(content)
    if digests[0].native != h.finalize():
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "messageDigest does not match the content")
    verify_signature(
        cert.public_key(), signer_info["signature"].native, signed_attributes_der(signer_info),
        signer_info["signature_algorithm"], digest,
    )


@functools.lru_cache(maxsize=64)
def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    """asn1crypto's view of a certificate; the RA and CA certificates recur in every
    response, so their parses are kept (read-only: callers never modify the result)."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


# --- building --------------------------------------------------------------------------


def self_issued(cert: x509.Certificate) -> bool:
    tbs = _asn1_cert(cert)["tbs_certificate"]
    return bool(tbs["issuer"] == tbs["subject"])


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Name chaining only (RFC 5280 comparison, tolerant of odd legacy names)."""
    return bool(_asn1_cert(cert)["tbs_certificate"]["issuer"] == _asn1_cert(issuer)["tbs_certificate"]["subject"])


def certificate_set(certs: Iterable[x509.Certificate]) -> cms.CertificateSet:
    seen: set[bytes] = set()
    choices = []
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der in seen:
            continue
        seen.add(der)
        choices.append(cms.CertificateChoices({"certificate": asn1_x509.Certificate.load(der)}))
    return cms.CertificateSet(choices)


def issuer_and_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    tbs = _asn1_cert(cert)["tbs_certificate"]
    return cms.IssuerAndSerialNumber({"issuer": tbs["issuer"], "serial_number": tbs["serial_number"]})


def attribute(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


@dataclass(frozen=True)
class Signer:
    """Who signs a SignedData: an RSA (or EC) key with its certificate."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def sign(
    content: bytes,
    signer: Signer,
    *,
    digest_name: str,
    attributes: Sequence[cms.CMSAttribute],
    certificates: Iterable[x509.Certificate],
    content_type: str = "data",
    signing_time: dt.datetime,
) -> bytes:
    """A DER SignedData over ``content`` with the standard plus the given signed attributes.

    The eContent is always present (an empty OCTET STRING when ``content`` is empty):
    OpenSSL-based clients such as certmonger treat an absent eContent as detached.
    """
    digest = hash_for(digest_name)
    h = hashes.Hash(digest)
    h.update(content)
    signed_attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [h.finalize()]}),
        *attributes,
    ])
    to_sign = b"\x31" + _der_length(len(signed_attrs.contents)) + signed_attrs.contents
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), digest)
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    else:
        signature = key.sign(to_sign, ec.ECDSA(digest))
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": f"{digest_name}_ecdsa"})
    digest_alg = algos.DigestAlgorithm({"algorithm": digest_name})
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": issuer_and_serial(signer.certificate)}),
        "digest_algorithm": digest_alg,
        "signed_attrs": signed_attrs,
        "signature_algorithm": sig_alg,
        "signature": signature,
    })
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [digest_alg],
        "encap_content_info": {"content_type": content_type, "content": content},
        "certificates": certificate_set(certificates),
        "signer_infos": [signer_info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


def degenerate_certificates(
    certs: Iterable[x509.Certificate], crls: Iterable[bytes] = ()
) -> bytes:
    """A certs-only SignedData (RFC 8894 section 3.4): no signers, no content."""
    crl_list = [cms.RevocationInfoChoice({"crl": asn1_crl(der)}) for der in crls]
    fields: dict[str, object] = {
        "version": "v1",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": certificate_set(certs),
        "signer_infos": [],
    }
    if crl_list:
        fields["crls"] = crl_list
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(fields)}).dump()


def asn1_crl(der: bytes) -> object:
    from asn1crypto import crl

    return crl.CertificateList.load(der)


def certificates_of_degenerate(data: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only SignedData (for tests and GetNextCACert clients)."""
    info = load_content_info(data, "certificates-only SignedData")
    if info["content_type"].native != "signed_data":
        raise MalformedMessage("not a SignedData")
    return embedded_certificates(info["content"])
