"""Server-side key generation (RFC 7030 section 4.4): which key to make, how to return it.

The CSR of a serverkeygen request is a template: the server ignores its public
key and signature (4.4.1) but takes the key *type* from it, so a client asking
with a P-384 CSR gets a P-384 key. A type the label's profile does not allow
falls back to the label's ``serverkeygen_algorithm``.

The key comes back as ``application/pkcs8`` (protected by TLS only) unless the
CSR asks for more (4.4.1.2): ``AsymmetricDecryptKeyIdentifier`` names the key of
the TLS client certificate on this connection (its subjectKeyIdentifier, or the
RFC 5280 / RFC 7093 identifier of its public key), and the key then comes back
enveloped to that certificate (see :mod:`.cms`). The symmetric
``DecryptKeyIdentifier`` would need pre-shared keys the gateway does not keep:
such a request is refused (501) rather than answered with a bare key.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.ca.builder import rfc7093_key_identifier
from gateway.errors import BadKey, BadRequest
from gateway.keys import RSA_SIZES, describe_public_key
from gateway.profiles.model import Profile

from . import cms
from .csr import ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID, Request, octet_attribute, smime_capabilities
from .errors import NotSupported


def key_algorithm(request: Request, profile: Profile, fallback: str) -> str:
    """The key to generate: the CSR key's type where the profile allows it."""
    try:
        desc = describe_public_key(request.csr.public_key())
    except (BadKey, ValueError, TypeError):
        return fallback
    if desc.family == "RSA":
        bits = next((s for s in RSA_SIZES if s >= int(desc.size)), RSA_SIZES[-1])
        name = f"RSA-{bits}"
    elif desc.family == "EC":
        name = desc.name
    else:
        return fallback
    return name if name in profile.key_policy.allowed else fallback


@dataclass(frozen=True)
class KeyEncryption:
    """The client's request to have the key enveloped to one of its keys."""

    key_id: bytes
    cipher_oid: str


def requested_encryption(request: Request) -> KeyEncryption | None:
    if request.attribute(DECRYPT_KEY_ID):
        raise NotSupported("encrypting the server-generated key to a symmetric key (DecryptKeyIdentifier) "
                           "is not supported; use AsymmetricDecryptKeyIdentifier or no encryption")
    key_id = octet_attribute(request, ASYMM_DECRYPT_KEY_ID)
    if key_id is None:
        return None
    return KeyEncryption(key_id, cms.choose_content_cipher(smime_capabilities(request)))


def key_identifiers(cert: x509.Certificate) -> set[bytes]:
    """Every identifier a client may use for its certificate's key."""
    public_key = cert.public_key()
    ids = {x509.SubjectKeyIdentifier.from_public_key(public_key).digest}
    try:
        ids.add(rfc7093_key_identifier(public_key))
    except BadKey:
        pass
    try:
        ids.add(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    except x509.ExtensionNotFound:
        pass
    return ids


def recipient_for(encryption: KeyEncryption, client_certificate: x509.Certificate | None) -> x509.Certificate:
    if client_certificate is None or encryption.key_id not in key_identifiers(client_certificate):
        raise BadRequest("the CSR asks for the key to be encrypted to key identifier "
                         f"{encryption.key_id.hex()}, which is not the key of this connection's "
                         "TLS client certificate")
    return client_certificate


def pkcs8(private_key: PrivateKeyTypes) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def encrypted_key(private_key: PrivateKeyTypes, encryption: KeyEncryption, recipient: x509.Certificate,
                  signer: x509.Certificate, signer_key: PrivateKeyTypes,
                  signer_chain: list[x509.Certificate]) -> bytes:
    """EnvelopedData(SignedData(AsymmetricKeyPackage)) for the recipient (DER)."""
    signed = cms.sign(cms.key_package(private_key), cms.KEY_PACKAGE, signer, signer_key, signer_chain)
    return cms.envelope(signed, "signed_data", recipient, encryption.key_id, encryption.cipher_oid)
