"""Signing with a CA key wherever it lives: in this process, or in a token.

cryptography's builders sign only with keys cryptography itself holds. A key in a
PKCS#11 token never leaves it, so for such a key (a :class:`TokenKey`) the builder
first signs with a stand-in software key of the same family and hash: that fixes
every byte of the to-be-signed structure, including its signatureAlgorithm. The
token then signs those bytes, and the certificate or CRL is put back together around
the token's signature (X.509: SEQUENCE { tbs, signatureAlgorithm, BIT STRING }) and
verified with the CA's public key before anyone sees it. The stand-in's own signature
is thrown away; its key is generated once per process and signs nothing that leaves.
"""

from __future__ import annotations

import abc
import functools
from typing import Union

from asn1crypto import crl as asn1_crl
from asn1crypto import parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)

from ..errors import GatewayError, Unavailable
from ..keys import SignatureHash, signature_hash_for_public


class TokenKey(abc.ABC):
    """A CA private key held by a device that signs for us (RSA PKCS#1 v1.5 or ECDSA)."""

    @abc.abstractmethod
    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        """The key's public half (what the CA certificate carries)."""

    @abc.abstractmethod
    def sign(self, data: bytes, algorithm: SignatureHash) -> bytes:
        """Sign ``data`` (not a digest): RSA PKCS#1 v1.5, or ECDSA as a DER Ecdsa-Sig-Value.
        Blocking: callers run it off the event loop."""


IssuerKey = Union[CertificateIssuerPrivateKeyTypes, TokenKey]
"""A CA key the core may sign with: a software key, or a key in a token."""


def hash_for(key: IssuerKey) -> SignatureHash | None:
    """The digest a CA signs with, matched to its key strength (None for EdDSA)."""
    return signature_hash_for_public(key.public_key())


@functools.lru_cache(maxsize=None)
def _stand_in(family: str) -> CertificateIssuerPrivateKeyTypes:
    """A throwaway software key whose signature fixes the TBS bytes (never published)."""
    if family == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _family(key: TokenKey) -> str:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ec"
    raise GatewayError(f"a token key must be RSA or EC, not {type(public).__name__}")


def _signed_structure(tbs: bytes, algorithm_der: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING signature } (RFC 5280 4.1, 5.1)."""
    bits: bytes = parser.emit(0, 0, 3, b"\x00" + signature)
    out: bytes = parser.emit(0, 1, 16, tbs + algorithm_der + bits)
    return out


def _check(key: TokenKey, signature: bytes, tbs: bytes, algorithm: SignatureHash) -> None:
    """The token's signature must verify under the CA's public key before it is used."""
    public = key.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, tbs, padding.PKCS1v15(), algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, tbs, ec.ECDSA(algorithm))
        else:  # pragma: no cover - _family refused it already
            raise InvalidSignature()
    except InvalidSignature:
        raise Unavailable("the CA's token returned a signature that does not verify under the CA's "
                          "public key (wrong key on the token?)") from None


def _stand_in_for(key: TokenKey, algorithm: SignatureHash | None) -> CertificateIssuerPrivateKeyTypes:
    if algorithm is None:
        raise GatewayError("a token key needs a signature hash")
    return _stand_in(_family(key))


def _token_signed(key: TokenKey, algorithm: SignatureHash, draft_der: bytes, tbs: bytes,
                  schema: type[asn1_x509.Certificate] | type[asn1_crl.CertificateList]) -> bytes:
    """The draft's TBS signed by the token and the structure put back together around it."""
    algorithm_der = schema.load(draft_der)["signature_algorithm"].dump()
    signature = key.sign(tbs, algorithm)
    _check(key, signature, tbs, algorithm)
    return _signed_structure(tbs, algorithm_der, signature)


def token_signature(key: TokenKey, data: bytes) -> tuple[str, SignatureHash, bytes]:
    """``data`` (a TBS structure built here, e.g. an OCSP ResponseData) signed by the token,
    checked under the CA's public key: (family ``rsa``/``ec``, hash, signature)."""
    family = _family(key)
    algorithm = hash_for(key)
    if algorithm is None:  # pragma: no cover - RSA and EC keys always have one
        raise GatewayError("a token key needs a signature hash")
    signature = key.sign(data, algorithm)
    _check(key, signature, data, algorithm)
    return family, algorithm, signature


def sign_certificate(builder: x509.CertificateBuilder, key: IssuerKey) -> x509.Certificate:
    """``builder.sign`` for any :data:`IssuerKey`."""
    algorithm = hash_for(key)
    if not isinstance(key, TokenKey):
        return builder.sign(key, algorithm)
    draft = builder.sign(_stand_in_for(key, algorithm), algorithm)
    assert algorithm is not None
    return x509.load_der_x509_certificate(_token_signed(
        key, algorithm, draft.public_bytes(serialization.Encoding.DER), draft.tbs_certificate_bytes,
        asn1_x509.Certificate))


def sign_crl(builder: x509.CertificateRevocationListBuilder, key: IssuerKey) -> x509.CertificateRevocationList:
    """``builder.sign`` for any :data:`IssuerKey`."""
    algorithm = hash_for(key)
    if not isinstance(key, TokenKey):
        return builder.sign(key, algorithm)
    draft = builder.sign(_stand_in_for(key, algorithm), algorithm)
    assert algorithm is not None
    return x509.load_der_x509_crl(_token_signed(
        key, algorithm, draft.public_bytes(serialization.Encoding.DER), draft.tbs_certlist_bytes,
        asn1_crl.CertificateList))
