"""Key algorithms the gateway accepts and generates, and private-key encryption at rest.

One place decides what "RSA-2048" or "EC-P256" means, so CA keys, subscriber keys
and profile key policies all speak the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

from .errors import BadKey, BadRequest

MIN_RSA_BITS = 2048

RSA_SIZES = (2048, 3072, 4096)
EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P256": ec.SECP256R1,
    "P384": ec.SECP384R1,
    "P521": ec.SECP521R1,
}
_CURVE_NAMES = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}

KEY_ALGORITHMS: tuple[str, ...] = tuple(f"RSA-{n}" for n in RSA_SIZES) + tuple(
    f"EC-{c}" for c in EC_CURVES
)
"""Canonical key algorithm names: ``RSA-2048`` .. ``RSA-4096``, ``EC-P256`` .. ``EC-P521``."""

SignatureHash = Union[hashes.SHA256, hashes.SHA384, hashes.SHA512]
"""The digests a CA signs with: named exactly, because cryptography's ``sign`` methods accept only the
SHA-2/SHA-3 family, not any :class:`~hashes.HashAlgorithm`."""


@dataclass(frozen=True)
class KeyDescription:
    """What a public key is, in policy terms: ``("RSA", 3072)`` or ``("EC", "P384")``."""

    family: str  # "RSA" or "EC"
    size: int | str  # RSA modulus bits, or curve name P256/P384/P521

    @property
    def name(self) -> str:
        return f"{self.family}-{self.size}"


def describe_public_key(key: CertificatePublicKeyTypes) -> KeyDescription:
    """Classify a public key; raises :class:`BadKey` for anything the gateway never accepts."""
    if isinstance(key, rsa.RSAPublicKey):
        return KeyDescription("RSA", key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVE_NAMES.get(key.curve.name)
        if curve is None:
            raise BadKey(f"elliptic curve {key.curve.name} is not supported")
        return KeyDescription("EC", curve)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyDescription("Ed25519", 256)
    raise BadKey(f"unsupported public key type {type(key).__name__}")


def check_key_strength(key: CertificatePublicKeyTypes) -> KeyDescription:
    """Refuse keys no profile may ever allow (RSA below 2048 bits, unknown curves)."""
    desc = describe_public_key(key)
    if desc.family == "RSA" and int(desc.size) < MIN_RSA_BITS:
        raise BadKey(f"RSA keys below {MIN_RSA_BITS} bits are refused (got {desc.size})")
    return desc


def parse_algorithm(name: str) -> KeyDescription:
    """Parse ``RSA-2048`` / ``EC-P256`` (also ``ECDSA-P-256``, ``rsa2048``) into a description."""
    norm = name.strip().upper().replace("ECDSA", "EC").replace("_", "-")
    norm = norm.replace("P-", "P")
    if norm.startswith("RSA"):
        bits = norm[3:].lstrip("-")
        if not bits.isdigit():
            raise BadRequest(f"unknown key algorithm {name!r}")
        size = int(bits)
        if size < MIN_RSA_BITS:
            raise BadKey(f"RSA keys below {MIN_RSA_BITS} bits are refused (got {size})")
        if size not in RSA_SIZES:
            raise BadRequest(f"RSA key size {size} not supported; use one of {RSA_SIZES}")
        return KeyDescription("RSA", size)
    if norm.startswith("EC"):
        curve = norm[2:].lstrip("-")
        if curve not in EC_CURVES:
            raise BadRequest(f"unknown curve in {name!r}; use one of {list(EC_CURVES)}")
        return KeyDescription("EC", curve)
    raise BadRequest(f"unknown key algorithm {name!r}; use one of {list(KEY_ALGORITHMS)}")


def generate_private_key(algorithm: str | KeyDescription) -> CertificateIssuerPrivateKeyTypes:
    """Generate a fresh private key for a canonical algorithm name."""
    desc = parse_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    if desc.family == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(desc.size))
    return ec.generate_private_key(EC_CURVES[str(desc.size)]())


def signature_hash_for(key: CertificateIssuerPrivateKeyTypes) -> SignatureHash | None:
    """The digest a CA signs with, matched to its key strength (None for EdDSA)."""
    return signature_hash_for_public(key.public_key())


def signature_hash_for_public(public: object) -> SignatureHash | None:
    """:func:`signature_hash_for` by the public half (a key held in a token has only that here)."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        by_size: dict[int, SignatureHash] = {256: hashes.SHA256(), 384: hashes.SHA384()}
        return by_size.get(public.curve.key_size, hashes.SHA512())
    if isinstance(public, rsa.RSAPublicKey):
        return hashes.SHA256() if public.key_size < 3072 else hashes.SHA384()
    return None


def encrypt_private_key(key: PrivateKeyTypes, passphrase: bytes) -> bytes:
    """PEM PKCS#8 encrypted with the best available scheme (AES-256-CBC, PBKDF2/scrypt)."""
    if not passphrase:
        raise BadRequest("an empty passphrase cannot protect a private key")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def decrypt_private_key(pem: bytes, passphrase: bytes) -> CertificateIssuerPrivateKeyTypes:
    """Load an encrypted PEM key; a wrong passphrase is a configuration error, not a crash."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise BadRequest("cannot decrypt private key: wrong passphrase or corrupt key") from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise BadKey("unsupported private key type")
    return key


def private_key_pem(key: PrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    """PEM PKCS#8, encrypted when a passphrase is given (for handing keys to subscribers)."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
