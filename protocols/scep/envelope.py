"""The pkcsPKIEnvelope: CMS EnvelopedData (and AuthEnvelopedData for AES-GCM) with RSA
key transport, opened with the RA key and built back to the requester, over
:mod:`gateway.edge.cms`.

Content ciphers the field uses: DES-CBC and 3DES-CBC (old Cisco, macOS, Windows), AES-CBC
(RFC 8894's baseline) and AES-GCM in AuthEnvelopedData (RFC 5083/5084). Key transport:
rsaEncryption (PKCS#1 v1.5) and RSAES-OAEP with its hash, MGF and label parameters. The
response uses what the client used (RFC 8894 section 3.3.2).

Every way an envelope can fail to open is the same ``badMessageCheck`` with the same
text: distinguishable failures would turn PKCS#1 v1.5 into a decryption oracle.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.edge import cms as edge
from gateway.edge.cms import (
    ALL_CIPHERS,
    CBC_CIPHERS,
    CIPHER_NAMES,
    GCM_CIPHERS,
    EnvelopeAlgorithms,
    OpenedEnvelope,
    Recipient,
    cipher_by_name,
    transport_algorithm,
)

from .cms import scep_errors
from .signer import SignerCertificate

__all__ = [
    "ALL_CIPHERS", "CBC_CIPHERS", "CIPHER_NAMES", "GCM_CIPHERS", "EnvelopeAlgorithms", "OpenedEnvelope", "Recipient",
    "cipher_by_name", "open_envelope", "seal_envelope", "transport_algorithm",
]


def open_envelope(
    data: bytes, recipients: Sequence[Recipient], allowed_ciphers: Sequence[str] = ALL_CIPHERS
) -> OpenedEnvelope:
    """Decrypt a pkcsPKIEnvelope addressed to one of ``recipients`` (the RA keys)."""
    with scep_errors():
        return edge.decrypt(data, recipients, allowed_ciphers, "pkcsPKIEnvelope")


def seal_envelope(plaintext: bytes, recipient: x509.Certificate | SignerCertificate,
                  algorithms_used: EnvelopeAlgorithms) -> bytes:
    """Encrypt ``plaintext`` to ``recipient`` (the requester's signer certificate, named by
    issuer and serial) with the algorithms the client used."""
    with scep_errors():
        if isinstance(recipient, x509.Certificate):
            to = edge.EnvelopeRecipient.of(recipient, key_transport=algorithms_used.key_transport)
        else:
            public = recipient.public_key()
            if not isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
                raise edge.UnsupportedAlgorithm("an envelope can only be encrypted to an RSA or EC key")
            to = edge.EnvelopeRecipient(public, issuer_and_serial=recipient.issuer_and_serial(),
                                        key_transport=algorithms_used.key_transport)
        return edge.encrypt(plaintext, [to], algorithms_used.content)
