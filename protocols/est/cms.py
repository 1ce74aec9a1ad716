"""CMS for an encrypted server-generated key (RFC 7030 section 4.4.2).

The key travels as an ``AsymmetricKeyPackage`` (RFC 5958) inside a SignedData
signed by the EST server (the party that generated the key), and that SignedData
inside an EnvelopedData to the client's own key, named by the identifier the
client put into its CSR's ``AsymmetricDecryptKeyIdentifier`` attribute:

* RSA recipient: KeyTransRecipientInfo, RSAES-OAEP with SHA-256;
* EC recipient: KeyAgreeRecipientInfo, ephemeral-static ECDH with the X9.63
  SHA-256 KDF (dhSinglePass-stdDH-sha256kdf-scheme) and AES-256 key wrap.

Content encryption is AES-CBC of the strongest size the client lists in its
SMIMECapabilities (AES-256 when it lists none). OpenSSL's ``cms -decrypt`` and
Bouncy Castle read both recipient kinds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

from asn1crypto import algos, cms, core
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from gateway.errors import BadRequest
from gateway.keys import signature_hash_for

from . import der

KEY_PACKAGE = "2.16.840.1.101.2.1.2.78.5"  # id-ct-KP-aKeyPackage (RFC 5958)
ECDH_SHA256_KDF = "1.3.132.1.11.1"  # dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753)
AES256_WRAP = "2.16.840.1.101.3.4.1.45"
CONTENT_CIPHERS = {  # OID -> (asn1crypto name, key bytes), strongest first
    "2.16.840.1.101.3.4.1.42": ("aes256_cbc", 32),
    "2.16.840.1.101.3.4.1.22": ("aes192_cbc", 24),
    "2.16.840.1.101.3.4.1.2": ("aes128_cbc", 16),
}


def choose_content_cipher(capabilities: list[str] | None) -> str:
    """The AES-CBC OID to encrypt with: the strongest the client lists, AES-256 if it lists none."""
    if not capabilities:
        return next(iter(CONTENT_CIPHERS))
    for oid in CONTENT_CIPHERS:
        if oid in capabilities:
            return oid
    raise BadRequest("the CSR's SMIMECapabilities list no content cipher this server offers (AES-CBC)")


def key_package(private_key: PrivateKeyTypes) -> bytes:
    """``AsymmetricKeyPackage ::= SEQUENCE OF OneAsymmetricKey`` with the one key (PKCS#8 v1)."""
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return der.sequence(pkcs8)


def _signature_algorithm(key: PrivateKeyTypes) -> tuple[str, hashes.HashAlgorithm]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = signature_hash_for(key) or hashes.SHA256()
        return f"{digest.name}_ecdsa", digest
    if isinstance(key, rsa.RSAPrivateKey):
        return "sha256_rsa", hashes.SHA256()
    raise BadRequest("the EST server's signing key type cannot sign a key package")


def sign(content: bytes, content_type: str, signer: x509.Certificate, signer_key: PrivateKeyTypes,
         chain: list[x509.Certificate], now: dt.datetime | None = None) -> bytes:
    """A SignedData (ContentInfo, DER) over ``content`` with signed attributes."""
    sig_name, digest = _signature_algorithm(signer_key)
    digest_name = digest.name  # sha256 / sha384 / sha512
    message_digest = hashlib.new(digest_name, content).digest()
    when = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    attributes = [
        cms.CMSAttribute({"type": "content_type", "values": [content_type]}).dump(),
        cms.CMSAttribute({"type": "message_digest", "values": [message_digest]}).dump(),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": when})]}).dump(),
    ]
    signed_attrs_der = der.set_of(attributes)  # DER order: what the signature covers
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        signature = signer_key.sign(signed_attrs_der, ec.ECDSA(digest))
    else:
        assert isinstance(signer_key, rsa.RSAPrivateKey)
        signature = signer_key.sign(signed_attrs_der, asym_padding.PKCS1v15(), digest)
    signer_cert = ax509.Certificate.load(signer.public_bytes(serialization.Encoding.DER))
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": signer_cert.issuer, "serial_number": signer_cert.serial_number,
        })}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest_name}),
        "signed_attrs": cms.CMSAttributes.load(signed_attrs_der),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_name}),
        "signature": signature,
    })
    signed = cms.SignedData({
        "version": "v3",  # eContentType is not id-data
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest_name})],
        "encap_content_info": {"content_type": content_type, "content": core.ParsableOctetString(content)},
        "certificates": [
            cms.CertificateChoices({"certificate": ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER))})
            for c in [signer, *chain]
        ],
        "signer_infos": [signer_info],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


def _shared_info(wrap_oid: str, key_bits: int) -> bytes:
    """ECC-CMS-SharedInfo (RFC 5753 section 7.2) fed to the KDF."""
    return der.sequence(
        der.sequence(der.oid(wrap_oid)),
        der.context(2, der.octet_string(key_bits.to_bytes(4, "big"))),
    )


def _key_agree(recipient: ec.EllipticCurvePublicKey, key_id: bytes, cek: bytes) -> cms.RecipientInfo:
    ephemeral = ec.generate_private_key(recipient.curve)
    shared = ephemeral.exchange(ec.ECDH(), recipient)
    kek = X963KDF(algorithm=hashes.SHA256(), length=32, sharedinfo=_shared_info(AES256_WRAP, 256)).derive(shared)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    originator = akeys.PublicKeyInfo({
        "algorithm": akeys.PublicKeyAlgorithm({"algorithm": "ec"}),  # parameters absent (RFC 5753)
        "public_key": point,
    })
    return cms.RecipientInfo({"kari": cms.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": {"originator_key": originator},
        "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
            "algorithm": ECDH_SHA256_KDF,
            "parameters": core.Any.load(der.sequence(der.oid(AES256_WRAP))),
        }),
        "recipient_encrypted_keys": [cms.RecipientEncryptedKey({
            "rid": {"r_key_id": {"subject_key_identifier": key_id}},
            "encrypted_key": aes_key_wrap(kek, cek),
        })],
    })})


def _key_transport(recipient: rsa.RSAPublicKey, key_id: bytes, cek: bytes) -> cms.RecipientInfo:
    encrypted = recipient.encrypt(cek, asym_padding.OAEP(
        mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
    ))
    sha256 = algos.DigestAlgorithm({"algorithm": "sha256"})
    return cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
        "version": "v2",  # rid is a subjectKeyIdentifier
        "rid": cms.RecipientIdentifier({"subject_key_identifier": key_id}),
        "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams({
                "hash_algorithm": sha256,
                "mask_gen_algorithm": algos.MaskGenAlgorithm({"algorithm": "mgf1", "parameters": sha256}),
            }),
        }),
        "encrypted_key": encrypted,
    })})


def envelope(content: bytes, content_type: str, recipient: x509.Certificate, key_id: bytes,
             cipher_oid: str) -> bytes:
    """An EnvelopedData (ContentInfo, DER) of ``content`` for the holder of ``recipient``'s key."""
    name, size = CONTENT_CIPHERS[cipher_oid]
    cek, iv = os.urandom(size), os.urandom(16)
    public_key = recipient.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        info = _key_agree(public_key, key_id, cek)
    elif isinstance(public_key, rsa.RSAPublicKey):
        info = _key_transport(public_key, key_id, cek)
    else:
        raise BadRequest("the decryption key named in the CSR is neither RSA nor EC")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    enveloped = cms.EnvelopedData({
        "version": "v2",
        "recipient_infos": [info],
        "encrypted_content_info": {
            "content_type": content_type,
            "content_encryption_algorithm": algos.EncryptionAlgorithm({"algorithm": name, "parameters": iv}),
            "encrypted_content": ciphertext,
        },
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()
