"""After the timed window: which issued certificates count.

Only correct certificates with a serial number no other certificate of the run
shares are counted, for every server alike. Two certificates with one serial cannot be
told apart by a CRL or an OCSP responder, so *both* are discarded (micromdm's file
depot hands out duplicates under concurrency).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def key_name(public_key: Any) -> str:
    """``RSA-2048``, ``EC-P256``... as the gateway names key types."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC-P256", "secp384r1": "EC-P384", "secp521r1": "EC-P521"}.get(
            public_key.curve.name, public_key.curve.name)
    return type(public_key).__name__


def spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Verdict:
    """The verified outcome of one run's responses."""

    checked: int = 0
    valid_unique: int = 0
    invalid: int = 0
    duplicate_serial: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    ca_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "valid_unique": self.valid_unique,
            "invalid": self.invalid,
            "duplicate_serial": self.duplicate_serial,
            "reasons": dict(self.reasons.most_common(5)),
            "ca_key": self.ca_key,
        }


def count_unique(verdict: Verdict, good: Iterable[tuple[bytes, int]]) -> Verdict:
    """Fill valid_unique/duplicate_serial from (issuer DER, serial) of the correct certificates."""
    counts = Counter(good)
    verdict.valid_unique = sum(1 for n in counts.values() if n == 1)
    verdict.duplicate_serial = sum(n for n in counts.values() if n > 1)
    return verdict


def verify_issued_certificate(cert: x509.Certificate, issuer: x509.Certificate,
                              public_key_der: bytes, dns_name: str | None = None) -> str | None:
    """None when the certificate is correct, otherwise why not."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"signature: {type(exc).__name__}"
    if spki(cert.public_key()) != public_key_der:
        return "wrong public key"
    if dns_name is not None:
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return "no subjectAltName"
        if dns_name not in names.get_values_for_type(x509.DNSName):
            return "name missing"
    return None


def verify_acme(issued: Iterable[Any]) -> Verdict:
    """Each ACME download: leaf signed by the next certificate, our key, our name."""
    verdict = Verdict()
    good: list[tuple[bytes, int]] = []
    for item in issued:
        verdict.checked += 1
        try:
            chain = x509.load_pem_x509_certificates(item.chain_pem)
        except ValueError:
            verdict.invalid += 1
            verdict.reasons["unparsable chain"] += 1
            continue
        if len(chain) < 2:
            verdict.invalid += 1
            verdict.reasons["no issuer in chain"] += 1
            continue
        leaf, issuer = chain[0], chain[1]
        try:
            verdict.ca_key = verdict.ca_key or key_name(issuer.public_key())
            problem = verify_issued_certificate(leaf, issuer, item.public_key_der, item.name)
        except Exception as exc:  # an unsupported key or a broken extension does not count
            problem = f"unreadable certificate: {type(exc).__name__}"
        if problem:
            verdict.invalid += 1
            verdict.reasons[problem] += 1
            continue
        good.append((leaf.issuer.public_bytes(), leaf.serial_number))
    return count_unique(verdict, good)
