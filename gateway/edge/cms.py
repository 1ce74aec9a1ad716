"""CMS (RFC 5652) as the protocol edges speak it: SignedData with any signed attributes,
EnvelopedData and AuthEnvelopedData both ways, and the degenerate certificates-only form.

One module for SCEP (pkiMessages, CertReps, GetCACert), EST (server-generated keys,
certs-only answers) and next MS-WSTEP and CMC. The structures are asn1crypto schemas
and every primitive is ``cryptography``'s. ``cryptography``'s own PKCS#7 helpers are used
where they fit (the certificates-only SignedData without CRLs) and not elsewhere, because
the edges need what they do not offer:

* signed attributes of our choosing (SCEP's messageType, nonces, transactionID) and an
  eContentType other than id-data (EST's key package), with SHA-1 for old SCEP clients,
  and verification of one SignerInfo against a certificate the caller picks;
* content encryption with DES and 3DES (old Cisco, macOS, Windows clients) and AES-GCM in
  AuthEnvelopedData (RFC 5083/5084), key transport with RSAES-OAEP and its parameters,
  and ECDH key agreement (RFC 5753) for EC recipients.

Errors are :class:`CmsError` subclasses (typed ``GatewayError``\\ s); each protocol maps
them to its own wire form. Every way an envelope can fail to open (not addressed to
us, wrong key, bad padding, bad tag) is the same :class:`DecryptionFailed`:
distinguishable failures would turn PKCS#1 v1.5 into a decryption oracle.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.errors import ErrorKind, GatewayError

from . import der

# --- errors -----------------------------------------------------------------------------


class CmsError(GatewayError):
    """A CMS message this module cannot accept; ``detail`` is safe to show the client."""

    kind = ErrorKind.BAD_REQUEST


class MalformedCms(CmsError):
    """The bytes are not the CMS structure they should be."""


class UnsupportedAlgorithm(CmsError):
    """A digest, signature, cipher or key-management algorithm this module does not do
    (or that the caller does not allow)."""


class VerificationFailed(CmsError):
    """A SignerInfo that does not verify: signature, messageDigest or missing attributes."""

    kind = ErrorKind.BAD_SIGNATURE


class DecryptionFailed(CmsError):
    """An envelope that cannot be opened with the keys given (all causes look alike)."""


# --- algorithms -------------------------------------------------------------------------

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""Message digests accepted and used (asn1crypto names); MD5 is refused."""

CBC_CIPHERS: dict[str, int] = {  # asn1crypto name -> key bytes
    "des": 8,
    "tripledes_3key": 24,
    "aes128_cbc": 16,
    "aes192_cbc": 24,
    "aes256_cbc": 32,
}
GCM_CIPHERS: dict[str, int] = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}

CIPHER_NAMES: dict[str, str] = {
    "des": "des-cbc",
    "tripledes_3key": "des-ede3-cbc",
    "aes128_cbc": "aes-128-cbc",
    "aes192_cbc": "aes-192-cbc",
    "aes256_cbc": "aes-256-cbc",
    "aes128_gcm": "aes-128-gcm",
    "aes192_gcm": "aes-192-gcm",
    "aes256_gcm": "aes-256-gcm",
}
"""Operator-facing names (OpenSSL's) for the asn1crypto content-cipher names."""
ALL_CIPHERS: tuple[str, ...] = tuple(CIPHER_NAMES.values())

ECDH_KDF_SCHEMES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme (OpenSSL's default)
    "1.3.132.1.11.0": hashes.SHA224,  # dhSinglePass-stdDH-sha224kdf-scheme (RFC 5753)
    "1.3.132.1.11.1": hashes.SHA256,
    "1.3.132.1.11.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512,
}
ECDH_SHA256_KDF = "1.3.132.1.11.1"
KEY_WRAPS: dict[str, int] = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}


def hash_for(digest_name: str) -> hashes.HashAlgorithm:
    """The hash for an asn1crypto digest algorithm name; unknown or weak ones are refused."""
    cls = DIGESTS.get(digest_name)
    if cls is None:
        raise UnsupportedAlgorithm(f"digest algorithm {digest_name} is not supported")
    return cls()


def cipher_by_name(operator_name: str) -> str:
    """asn1crypto name for an operator cipher name (``aes-256-cbc`` -> ``aes256_cbc``)."""
    for asn1_name, op_name in CIPHER_NAMES.items():
        if op_name == operator_name:
            return asn1_name
    raise ValueError(f"unknown content cipher {operator_name!r}; use one of {list(ALL_CIPHERS)}")


def transport_algorithm(name: str, oaep_hash: str = "sha256") -> cms.KeyEncryptionAlgorithm:
    """An RSA key-transport AlgorithmIdentifier: ``rsaes_pkcs1v15``, or ``rsaes_oaep`` with
    ``oaep_hash`` for both the hash and MGF1 (and the empty label)."""
    if name == "rsaes_pkcs1v15":
        return cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"})
    if name == "rsaes_oaep":
        return cms.KeyEncryptionAlgorithm({
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams({
                "hash_algorithm": {"algorithm": oaep_hash},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": oaep_hash}},
            }),
        })
    raise ValueError(f"unknown key transport {name!r}")


class GcmParameters(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 5084 GCMParameters (asn1crypto leaves them undeclared)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 5753 section 7.2 ECC-CMS-SharedInfo, the X9.63 KDF's shared info."""

    _fields = [
        ("key_info", cms.KeyEncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


# --- reading ----------------------------------------------------------------------------


def load_content_info(data: bytes, what: str = "CMS message") -> cms.ContentInfo:
    """Parse a DER (or BER) ContentInfo strictly: trailing bytes or bad structure raise
    :class:`MalformedCms`.

    Everything is decoded now, not lazily, so bad bytes fail here; embedded certificates
    only down to their structure: ``cryptography`` parses them strictly where they are
    used, and asn1crypto's native form of a certificate was 80% of the cost (about
    1.1 ms per SCEP request).
    """
    try:
        info = cms.ContentInfo.load(data, strict=True)
        content = info["content"]
        if info["content_type"].native == "signed_data":
            for name in ("version", "digest_algorithms", "encap_content_info", "signer_infos"):
                _ = content[name].native
            certificates = content["certificates"]
            if not isinstance(certificates, core.Void):
                for choice in certificates:
                    _ = choice.name, choice.chosen.contents
        else:
            _ = content.native
    # AttributeError: asn1crypto has no native form for a REAL, INSTANCE OF or ObjectDescriptor in an ANY
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MalformedCms(f"{what} is not a CMS ContentInfo") from exc
    return info


def embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    """The X.509 certificates a SignedData carries (attribute and other certificates skipped)."""
    certs = signed_data["certificates"]
    out: list[x509.Certificate] = []
    if isinstance(certs, core.Void):  # absent (not .native: that decodes every certificate)
        return out
    for choice in certs:
        try:
            if choice.name != "certificate":
                continue  # attribute or other certificates: never signers
            out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
        except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
            raise MalformedCms("an embedded certificate does not parse") from exc
    return out


def certificates_of_degenerate(data: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only SignedData (GetCACert, CertRep and EST responses)."""
    info = load_content_info(data, "certificates-only SignedData")
    if info["content_type"].native != "signed_data":
        raise MalformedCms("not a SignedData")
    return embedded_certificates(info["content"])


def asn1_certificate(cert: x509.Certificate) -> asn1_x509.Certificate:
    """asn1crypto's view of a certificate (lazy: only the parts looked at are parsed)."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def names_match(a: asn1_x509.Name, b: asn1_x509.Name) -> bool:
    """RFC 5280 section 7.1 name comparison; identical encodings short-cut it (the
    normalising comparison costs about 0.2 ms, the byte comparison nothing)."""
    if a.dump() == b.dump():
        return True
    try:
        return bool(a == b)
    except ValueError:  # RFC 4518 string prep refuses a value (e.g. malformed bidi text): not equal
        return False


def self_issued(cert: x509.Certificate) -> bool:
    tbs = asn1_certificate(cert)["tbs_certificate"]
    return names_match(tbs["issuer"], tbs["subject"])


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Name chaining only (RFC 5280 comparison, tolerant of odd legacy names)."""
    return names_match(
        asn1_certificate(cert)["tbs_certificate"]["issuer"], asn1_certificate(issuer)["tbs_certificate"]["subject"]
    )


def subject_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def matches_identifier(cert: x509.Certificate, sid: core.Choice, key_identifier: bytes | None = None) -> bool:
    """Does ``cert`` answer to this SignerIdentifier, RecipientIdentifier or
    KeyAgreeRecipientIdentifier (IssuerAndSerialNumber or subject key identifier)?

    ``key_identifier`` names the key when the certificate's own subjectKeyIdentifier
    extension is not what the sender used (RFC 7093 identifiers, EST's
    AsymmetricDecryptKeyIdentifier)."""
    if sid.name == "issuer_and_serial_number":
        ias = sid.chosen
        if ias["serial_number"].native != cert.serial_number:
            return False
        return names_match(ias["issuer"], asn1_certificate(cert)["tbs_certificate"]["issuer"])
    if sid.name == "subject_key_identifier":
        wanted = sid.chosen.native
    elif sid.name == "r_key_id":
        wanted = sid.chosen["subject_key_identifier"].native
    else:
        return False
    if key_identifier is not None and wanted == key_identifier:
        return True
    return bool(wanted == subject_key_identifier(cert))


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


def signed_attributes_der(signer_info: cms.SignerInfo) -> bytes:
    """The bytes a SignerInfo signature covers: the signed attributes, as received,
    re-tagged from ``[0] IMPLICIT`` to a SET (RFC 5652 section 5.4)."""
    return der.tlv(0x31, bytes(signer_info["signed_attrs"].contents))


# --- verifying --------------------------------------------------------------------------


def verify_signature(
    public_key: object, signature: bytes, data: bytes, signature_algorithm: algos.SignedDigestAlgorithm,
    digest: hashes.HashAlgorithm, what: str = "SignedData",
) -> None:
    """Check a CMS signature with the signer's public key (RSA PKCS#1 v1.5 or PSS, ECDSA)."""
    try:
        # inside the try: asn1crypto raises ValueError for an algorithm OID it cannot name
        algo = signature_algorithm.signature_algo
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
                raise UnsupportedAlgorithm(f"signature algorithm {algo} does not fit an RSA key")
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if algo != "ecdsa":
                raise UnsupportedAlgorithm(f"signature algorithm {algo} does not fit an EC key")
            public_key.verify(signature, data, ec.ECDSA(digest))
        else:
            raise UnsupportedAlgorithm("the signer's key type is not supported")
    except InvalidSignature:
        raise VerificationFailed(f"the {what} signature does not verify") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise UnsupportedAlgorithm(f"the {what} signature algorithm is not supported") from exc


def signature_digest(signer_info: cms.SignerInfo) -> hashes.HashAlgorithm:
    """The message digest a SignerInfo uses (its digestAlgorithm)."""
    return hash_for(signer_info["digest_algorithm"]["algorithm"].native)


def verify_signer_info(
    signer_info: cms.SignerInfo, cert: x509.Certificate | object, content: bytes, what: str = "SignedData"
) -> None:
    """RFC 5652 section 5.4: messageDigest must match the content, the signature the attributes.

    ``cert`` is the signer's certificate, or its public key when the caller read the key
    itself (SCEP reads old clients' malformed self-signed certificates leniently).
    ``cert.public_key()`` errors (a key ``cryptography`` cannot load) are left to the caller,
    which knows whether that is the client's fault."""
    public_key = cert.public_key() if isinstance(cert, x509.Certificate) else cert
    digest = signature_digest(signer_info)
    if signer_info["signed_attrs"].native is None:
        raise VerificationFailed(f"a {what} must carry signed attributes")
    digests = attribute_values(signer_info, "1.2.840.113549.1.9.4")
    if len(digests) != 1:
        raise VerificationFailed("the messageDigest attribute is missing")
    h = hashes.Hash(digest)
    h.update(content)
    if digests[0].native != h.finalize():
        raise VerificationFailed("messageDigest does not match the content")
    verify_signature(
        public_key, signer_info["signature"].native, signed_attributes_der(signer_info),
        signer_info["signature_algorithm"], digest, what,
    )


# --- building SignedData ----------------------------------------------------------------


def _unique(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        encoded = cert.public_bytes(serialization.Encoding.DER)
        if encoded not in seen:
            seen.add(encoded)
            out.append(cert)
    return out


def certificate_set(certs: Iterable[x509.Certificate]) -> cms.CertificateSet:
    """A CertificateSet without duplicates (asn1crypto writes it in DER order)."""
    return cms.CertificateSet([
        cms.CertificateChoices({"certificate": asn1_certificate(cert)}) for cert in _unique(certs)
    ])


def issuer_and_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    tbs = asn1_certificate(cert)["tbs_certificate"]
    return cms.IssuerAndSerialNumber({"issuer": tbs["issuer"], "serial_number": tbs["serial_number"]})


def attribute(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    """A signed attribute with one value (``oid`` dotted or an asn1crypto name)."""
    return cms.CMSAttribute({"type": oid, "values": [value]})


@dataclass(frozen=True)
class Signer:
    """Who signs a SignedData: an RSA or EC key with its certificate."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def sign(
    content: bytes,
    signer: Signer,
    *,
    digest_name: str,
    signing_time: dt.datetime,
    attributes: Sequence[cms.CMSAttribute] = (),
    certificates: Iterable[x509.Certificate] = (),
    content_type: str = "data",
) -> bytes:
    """A DER ContentInfo/SignedData over ``content``: contentType, signingTime and
    messageDigest signed attributes plus ``attributes``, one SignerInfo named by issuer
    and serial.

    The eContent is always present (an empty OCTET STRING when ``content`` is empty):
    OpenSSL-based clients such as certmonger treat an absent eContent as detached. RSA
    signatures are named ``rsaEncryption`` (RFC 3370 section 3.2), which every CMS
    reader takes and the only name old SCEP clients know; EC ones ``ecdsa-with-SHAxxx``.
    The version is 3 when the eContentType is not id-data, else 1 (RFC 5652 section 5.1).
    """
    digest = hash_for(digest_name)
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": f"{digest_name}_ecdsa"})
    else:
        raise UnsupportedAlgorithm("only RSA and EC keys sign CMS messages here")
    h = hashes.Hash(digest)
    h.update(content)
    signed_attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [h.finalize()]}),
        *attributes,
    ])
    to_sign = der.tlv(0x31, bytes(signed_attrs.contents))  # asn1crypto sorts the SET OF
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), digest)
    else:
        signature = key.sign(to_sign, ec.ECDSA(digest))
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
        "version": "v1" if content_type == "data" else "v3",
        "digest_algorithms": [digest_alg],
        "encap_content_info": {"content_type": content_type, "content": content},
        "certificates": certificate_set(certificates),
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def certificates_only(certs: Iterable[x509.Certificate], crls: Iterable[bytes] = ()) -> bytes:
    """A certs-only SignedData (RFC 8894 section 3.4, RFC 7030 section 4.1.3): no signers,
    no content, duplicates dropped, the certificates (and CRLs, DER) in DER order.

    ``cryptography``'s ``serialize_certificates`` writes it when it can; it takes neither
    CRLs nor an empty certificate list (SCEP's GetCRL answer), for which asn1crypto
    writes the same structure (the bytes are the same, tests/edge checks it)."""
    unique = _unique(certs)
    crl_list = list(crls)
    if unique and not crl_list:
        return pkcs7.serialize_certificates(unique, serialization.Encoding.DER)
    return _certificates_only_asn1(unique, crl_list)


def _certificates_only_asn1(certs: list[x509.Certificate], crls: list[bytes]) -> bytes:
    fields: dict[str, object] = {
        "version": "v1",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": certificate_set(certs),
        "signer_infos": [],
    }
    if crls:
        fields["crls"] = [cms.RevocationInfoChoice({"crl": asn1_crl.CertificateList.load(c)}) for c in crls]
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(fields)}).dump())


# --- EnvelopedData: opening -------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A decryption identity: a certificate with its private key (RSA for key transport,
    EC for key agreement), and the key identifier senders may name it by."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key_identifier: bytes | None = None

    def answers_to(self, rid: core.Choice) -> bool:
        return matches_identifier(self.certificate, rid, self.key_identifier)


@dataclass(frozen=True)
class EnvelopeAlgorithms:
    """What a sender used, so a reply can use the same (RFC 8894 section 3.3.2)."""

    content: str  # asn1crypto name, e.g. "tripledes_3key"
    key_transport: cms.KeyEncryptionAlgorithm  # of the RecipientInfo that opened it

    @property
    def content_name(self) -> str:
        return CIPHER_NAMES[self.content]

    @property
    def key_transport_name(self) -> str:
        return str(self.key_transport["algorithm"].native)


@dataclass(frozen=True)
class OpenedEnvelope:
    plaintext: bytes
    algorithms: EnvelopeAlgorithms
    recipient: Recipient
    content_type: str = "data"  # of the encrypted content (asn1crypto name or dotted OID)


def _cannot_open(what: str) -> DecryptionFailed:
    return DecryptionFailed(f"the {what} cannot be decrypted with this server's keys")


def _oaep(params: algos.RSAESOAEPParams) -> padding.OAEP:
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise UnsupportedAlgorithm("RSAES-OAEP with a mask generation function other than MGF1")
    label = params["p_source_algorithm"]["parameters"].native or None
    return padding.OAEP(
        mgf=padding.MGF1(hash_for(mgf["parameters"]["algorithm"].native)),
        algorithm=hash_for(params["hash_algorithm"]["algorithm"].native),
        label=label,
    )


def _transport_padding(alg: cms.KeyEncryptionAlgorithm) -> padding.AsymmetricPadding:
    name = alg["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return padding.PKCS1v15()
    if name == "rsaes_oaep":
        return _oaep(alg["parameters"])
    raise UnsupportedAlgorithm(f"key transport algorithm {name} is not supported")


def _check_cipher(name: str, allowed: Sequence[str]) -> None:
    if name not in CBC_CIPHERS and name not in GCM_CIPHERS:
        raise UnsupportedAlgorithm(f"content encryption {name} is not supported")
    if CIPHER_NAMES[name] not in allowed:
        raise UnsupportedAlgorithm(f"content encryption {CIPHER_NAMES[name]} is not allowed here")


def _block_cipher(name: str, key: bytes) -> BlockCipherAlgorithm:
    if name == "des":
        return TripleDES(key * 3)  # single DES is 3DES with K1 = K2 = K3
    if name == "tripledes_3key":
        return TripleDES(key)
    return algorithms.AES(key)


def _cbc_decrypt(name: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = _block_cipher(name, key)
    if len(iv) * 8 != cipher.block_size:
        raise ValueError("IV length does not fit the cipher")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _cbc_encrypt(name: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = _block_cipher(name, key)
    padder = sym_padding.PKCS7(cipher.block_size).padder()
    encryptor = Cipher(cipher, modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def _kek(
    private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey, scheme: str,
    wrap: cms.KeyEncryptionAlgorithm, ukm: bytes | None,
) -> bytes:
    """RFC 5753 section 3.1.1: ECDH, then the X9.63 KDF over ECC-CMS-SharedInfo."""
    kdf_hash = ECDH_KDF_SCHEMES.get(scheme)
    wrap_name = wrap["algorithm"].native
    if kdf_hash is None or wrap_name not in KEY_WRAPS:
        raise UnsupportedAlgorithm(f"key agreement {scheme} with {wrap_name} is not supported")
    size = KEY_WRAPS[wrap_name]
    info: dict[str, object] = {
        "key_info": cms.KeyEncryptionAlgorithm({"algorithm": wrap_name}),
        "supp_pub_info": (size * 8).to_bytes(4, "big"),
    }
    if ukm is not None:
        info["entity_u_info"] = ukm
    shared = private.exchange(ec.ECDH(), public)
    return X963KDF(algorithm=kdf_hash(), length=size, sharedinfo=EccCmsSharedInfo(info).dump()).derive(shared)


def _ktri_key(
    ktri: cms.KeyTransRecipientInfo, recipients: Sequence[Recipient], what: str
) -> tuple[bytes, Recipient, cms.KeyEncryptionAlgorithm] | None:
    for recipient in recipients:
        if not isinstance(recipient.key, rsa.RSAPrivateKey) or not recipient.answers_to(ktri["rid"]):
            continue
        alg = ktri["key_encryption_algorithm"]
        pad = _transport_padding(alg)
        try:
            return recipient.key.decrypt(ktri["encrypted_key"].native, pad), recipient, alg
        except ValueError:
            raise _cannot_open(what) from None
    return None


def _kari_key(
    kari: cms.KeyAgreeRecipientInfo, recipients: Sequence[Recipient], what: str
) -> tuple[bytes, Recipient, cms.KeyEncryptionAlgorithm] | None:
    alg = kari["key_encryption_algorithm"]
    for rek in kari["recipient_encrypted_keys"]:
        for recipient in recipients:
            key = recipient.key
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not recipient.answers_to(rek["rid"]):
                continue
            originator = kari["originator"]
            if originator.name != "originator_key":
                raise UnsupportedAlgorithm("key agreement needs the originator's ephemeral public key")
            try:
                wrap = cms.KeyEncryptionAlgorithm.load(alg["parameters"].dump())
                point = bytes(originator.chosen["public_key"].native)
                ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
                ukm = kari["ukm"].native
                kek = _kek(key, ephemeral, alg["algorithm"].dotted, wrap, ukm)
                return aes_key_unwrap(kek, rek["encrypted_key"].native), recipient, alg
            except UnsupportedAlgorithm:
                raise
            except Exception:  # bad point, bad wrap: all look the same to the sender
                raise _cannot_open(what) from None
    return None


def _content_key(
    infos: cms.RecipientInfos, recipients: Sequence[Recipient], what: str
) -> tuple[bytes, Recipient, cms.KeyEncryptionAlgorithm]:
    """Unwrap the content-encryption key with the key the envelope is addressed to: RSA
    recipients read KeyTransRecipientInfos, EC recipients KeyAgreeRecipientInfos."""
    kinds = {"ktri": "RSA key transport", "kari": "ECDH key agreement"}
    wanted = {
        kind for kind, key_type in (("ktri", rsa.RSAPrivateKey), ("kari", ec.EllipticCurvePrivateKey))
        if any(isinstance(r.key, key_type) for r in recipients)
    }
    if not wanted:
        raise _cannot_open(what)
    usable = [info for info in infos if info.name in wanted]
    if not usable:
        names = " or ".join(kinds[k] for k in sorted(wanted, reverse=True))
        raise UnsupportedAlgorithm(f"only {names} recipients are supported")
    for info in usable:
        found = (_ktri_key if info.name == "ktri" else _kari_key)(info.chosen, recipients, what)
        if found is not None:
            return found
    raise _cannot_open(what)


def decrypt(
    data: bytes, recipients: Sequence[Recipient], allowed_ciphers: Sequence[str] = ALL_CIPHERS,
    what: str = "EnvelopedData",
) -> OpenedEnvelope:
    """Open an EnvelopedData (CBC ciphers) or AuthEnvelopedData (AES-GCM) ContentInfo
    addressed to one of ``recipients``; client BER is brought to DER first."""
    info = load_content_info(der.normalize_envelope(data), what)
    kind = info["content_type"].native
    env = info["content"]
    if kind == "enveloped_data":
        eci = env["encrypted_content_info"]
    elif kind == "authenticated_enveloped_data":
        eci = env["auth_encrypted_content_info"]
    else:
        raise MalformedCms(f"the {what} is not an EnvelopedData")
    cipher_alg = eci["content_encryption_algorithm"]
    name = cipher_alg["algorithm"].native
    _check_cipher(name, allowed_ciphers)
    if kind == "enveloped_data" and name in GCM_CIPHERS:
        raise UnsupportedAlgorithm("AES-GCM needs an AuthEnvelopedData (RFC 5083)")
    if kind == "authenticated_enveloped_data" and name not in GCM_CIPHERS:
        raise UnsupportedAlgorithm("AuthEnvelopedData is only supported with AES-GCM")
    key, recipient, transport = _content_key(env["recipient_infos"], recipients, what)
    content = eci["encrypted_content"]
    if content.native is None:
        raise MalformedCms(f"the {what} has no encrypted content")
    ciphertext = bytes(content.native)  # BER constructed OCTET STRINGs are joined by asn1crypto
    try:
        if name in GCM_CIPHERS:
            if len(key) != GCM_CIPHERS[name]:
                raise ValueError("content key length does not fit the cipher")
            params = GcmParameters.load(cipher_alg["parameters"].dump())
            aad = b""
            if env["auth_attrs"].native is not None:
                aad = der.tlv(0x31, bytes(env["auth_attrs"].contents))
            tag = env["mac"].native
            if len(tag) != params["aes_icvlen"].native:
                raise ValueError("MAC length does not fit the parameters")
            plaintext = AESGCM(key).decrypt(params["aes_nonce"].native, ciphertext + tag, aad or None)
        else:
            if len(key) != CBC_CIPHERS[name]:
                raise ValueError("content key length does not fit the cipher")
            plaintext = _cbc_decrypt(name, key, cipher_alg["parameters"].native, ciphertext)
    except Exception:  # bad padding, bad tag, wrong IV length: all look the same to the sender
        raise _cannot_open(what) from None
    content_type = eci["content_type"]
    return OpenedEnvelope(
        plaintext, EnvelopeAlgorithms(name, transport), recipient,
        str(content_type.native if content_type.native is not None else content_type.dotted),
    )


# --- EnvelopedData: sealing -------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeRecipient:
    """Whom an envelope is for: a public key, the identifier it is named by (its
    certificate's issuer and serial, or a subject key identifier), and for RSA the
    key-transport algorithm. EC keys get ephemeral-static ECDH with the X9.63 SHA-256
    KDF (dhSinglePass-stdDH-sha256kdf-scheme) and AES-256 key wrap, which OpenSSL's
    ``cms -decrypt`` and Bouncy Castle read."""

    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    issuer_and_serial: cms.IssuerAndSerialNumber | None = None
    key_identifier: bytes | None = None
    key_transport: cms.KeyEncryptionAlgorithm | None = None  # RSA: None means OAEP SHA-256

    @classmethod
    def of(
        cls, certificate: x509.Certificate, *, key_identifier: bytes | None = None,
        key_transport: cms.KeyEncryptionAlgorithm | None = None,
    ) -> EnvelopeRecipient:
        """The holder of ``certificate``'s key, named by ``key_identifier`` when given,
        else by the certificate's issuer and serial number."""
        public = certificate.public_key()
        if not isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise UnsupportedAlgorithm("an envelope can only be encrypted to an RSA or EC key")
        if key_identifier is not None:
            return cls(public, key_identifier=key_identifier, key_transport=key_transport)
        return cls(public, issuer_and_serial=issuer_and_serial(certificate), key_transport=key_transport)


def _key_transport_info(recipient: EnvelopeRecipient, cek: bytes) -> cms.RecipientInfo:
    public = recipient.public_key
    if not isinstance(public, rsa.RSAPublicKey):
        raise UnsupportedAlgorithm("key transport needs an RSA key")
    transport = recipient.key_transport or transport_algorithm("rsaes_oaep", "sha256")
    if recipient.key_identifier is not None:
        version, rid = "v2", cms.RecipientIdentifier({"subject_key_identifier": recipient.key_identifier})
    else:
        version, rid = "v0", cms.RecipientIdentifier({"issuer_and_serial_number": recipient.issuer_and_serial})
    return cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
        "version": version,
        "rid": rid,
        "key_encryption_algorithm": transport,
        "encrypted_key": public.encrypt(cek, _transport_padding(transport)),
    })})


def _key_agreement_info(recipient: EnvelopeRecipient, cek: bytes) -> cms.RecipientInfo:
    public = recipient.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    ephemeral = ec.generate_private_key(public.curve)
    wrap = cms.KeyEncryptionAlgorithm({"algorithm": "aes256_wrap"})
    kek = _kek(ephemeral, public, ECDH_SHA256_KDF, wrap, None)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    originator = asn1_keys.PublicKeyInfo({
        "algorithm": asn1_keys.PublicKeyAlgorithm({"algorithm": "ec"}),  # parameters absent (RFC 5753)
        "public_key": point,
    })
    if recipient.key_identifier is not None:
        rid = cms.KeyAgreementRecipientIdentifier(
            {"r_key_id": {"subject_key_identifier": recipient.key_identifier}}
        )
    else:
        rid = cms.KeyAgreementRecipientIdentifier({"issuer_and_serial_number": recipient.issuer_and_serial})
    return cms.RecipientInfo({"kari": cms.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": {"originator_key": originator},
        "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
            "algorithm": ECDH_SHA256_KDF, "parameters": core.Any.load(wrap.dump()),
        }),
        "recipient_encrypted_keys": [cms.RecipientEncryptedKey({
            "rid": rid, "encrypted_key": aes_key_wrap(kek, cek),
        })],
    })})


def _recipient_info(recipient: EnvelopeRecipient, cek: bytes, cipher: str) -> cms.RecipientInfo:
    if recipient.key_transport is not None or isinstance(recipient.public_key, rsa.RSAPublicKey):
        return _key_transport_info(recipient, cek)
    if not cipher.startswith("aes"):
        # AES key wrap takes 16 bytes and more; RFC 5753 pairs it with AES content keys
        raise UnsupportedAlgorithm(f"key agreement (EC recipients) needs an AES content cipher, not {cipher}")
    return _key_agreement_info(recipient, cek)


def encrypt(
    plaintext: bytes, recipients: Sequence[EnvelopeRecipient], cipher: str, content_type: str = "data"
) -> bytes:
    """A DER ContentInfo holding ``plaintext`` encrypted to ``recipients``: an EnvelopedData
    for the CBC ciphers, an AuthEnvelopedData (RFC 5083) for AES-GCM. ``cipher`` is an
    asn1crypto name (:data:`CBC_CIPHERS`, :data:`GCM_CIPHERS`)."""
    if not recipients:
        raise ValueError("an envelope needs at least one recipient")
    if cipher in GCM_CIPHERS:
        cek = AESGCM.generate_key(GCM_CIPHERS[cipher] * 8)
        nonce = os.urandom(12)
        sealed = AESGCM(cek).encrypt(nonce, plaintext, None)
        infos = [_recipient_info(r, cek, cipher) for r in recipients]
        auth_env = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": infos,
            "auth_encrypted_content_info": {
                "content_type": content_type,
                "content_encryption_algorithm": {
                    "algorithm": cipher, "parameters": GcmParameters({"aes_nonce": nonce, "aes_icvlen": 16}),
                },
                "encrypted_content": sealed[:-16],
            },
            "mac": sealed[-16:],
        })
        return bytes(cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": auth_env}).dump())
    if cipher not in CBC_CIPHERS:
        raise UnsupportedAlgorithm(f"content encryption {cipher} is not supported")
    cek = os.urandom(CBC_CIPHERS[cipher])
    iv = os.urandom(8 if cipher in ("des", "tripledes_3key") else 16)
    infos = [_recipient_info(r, cek, cipher) for r in recipients]
    # RFC 5652 section 6.1: version 0 when every RecipientInfo is a version 0 ktri, else 2
    plain = all(info.name == "ktri" and info.chosen["version"].native == "v0" for info in infos)
    env = cms.EnvelopedData({
        "version": "v0" if plain else "v2",
        "recipient_infos": infos,
        "encrypted_content_info": {
            "content_type": content_type,
            "content_encryption_algorithm": {"algorithm": cipher, "parameters": iv},
            "encrypted_content": _cbc_encrypt(cipher, cek, iv, plaintext),
        },
    })
    return bytes(cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump())
