"""PEM helpers for certificates and chains, strict about what they accept."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import BadRequest


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def certs_to_pem(certs: "list[x509.Certificate] | tuple[x509.Certificate, ...]") -> str:
    return "".join(cert_to_pem(c) for c in certs)


def load_certificate(data: bytes | str) -> x509.Certificate:
    """One certificate from PEM or DER; anything else is a BadRequest."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise BadRequest("not a valid X.509 certificate") from exc


def load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """Zero or more PEM certificates (a chain file)."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise BadRequest("not a valid PEM certificate chain") from exc
