"""CMS for an encrypted server-generated key (RFC 7030 section 4.4.2), over
:mod:`gateway.edge.cms`.

The key travels as an ``AsymmetricKeyPackage`` (RFC 5958) inside a SignedData signed by
the EST server (the party that generated the key), and that SignedData inside an
EnvelopedData to the client's own key, named by the identifier the client put into its
CSR's ``AsymmetricDecryptKeyIdentifier`` attribute: RSAES-OAEP with SHA-256 for an RSA
key, ephemeral-static ECDH with the X9.63 SHA-256 KDF and AES-256 key wrap for an EC
key (see :class:`gateway.edge.cms.EnvelopeRecipient`).

What is EST's here: the content cipher is the strongest AES-CBC the client lists in its
SMIMECapabilities (AES-256 when it lists none), and failures are HTTP 400s.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.edge import cms as edge
from gateway.edge import der
from gateway.errors import BadRequest
from gateway.keys import signature_hash_for

KEY_PACKAGE = "2.16.840.1.101.2.1.2.78.5"  # id-ct-KP-aKeyPackage (RFC 5958)
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


def sign(content: bytes, content_type: str, signer: x509.Certificate, signer_key: PrivateKeyTypes,
         chain: list[x509.Certificate], now: dt.datetime | None = None) -> bytes:
    """A SignedData (ContentInfo, DER) over ``content``, signed with SHA-256 (RSA) or the
    hash matched to the curve (EC), carrying the signer's certificate and ``chain``."""
    if isinstance(signer_key, ec.EllipticCurvePrivateKey):
        digest = signature_hash_for(signer_key)
        digest_name = digest.name if digest is not None else "sha256"
    elif isinstance(signer_key, rsa.RSAPrivateKey):
        digest_name = "sha256"
    else:
        raise BadRequest("the EST server's signing key type cannot sign a key package")
    when = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    return edge.sign(
        content, edge.Signer(signer, signer_key), digest_name=digest_name, signing_time=when,
        certificates=[signer, *chain], content_type=content_type,
    )


def envelope(content: bytes, content_type: str, recipient: x509.Certificate, key_id: bytes,
             cipher_oid: str) -> bytes:
    """An EnvelopedData (ContentInfo, DER) of ``content`` for the holder of ``recipient``'s key."""
    name, _ = CONTENT_CIPHERS[cipher_oid]
    try:
        to = edge.EnvelopeRecipient.of(recipient, key_identifier=key_id)
    except edge.UnsupportedAlgorithm:
        raise BadRequest("the decryption key named in the CSR is neither RSA nor EC") from None
    return edge.encrypt(content, [to], name, content_type)
