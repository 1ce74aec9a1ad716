"""PKCS#12 files for keys the gateway generated: one builder for every caller (operator
keygen, and protocols that hand a device its key, through ``Door.keygen``).

``modern`` (the default) is PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and
certificates with a SHA-256 MAC, what OpenSSL 3 writes by default. ``legacy`` is
pbeWithSHAAnd3-KeyTripleDES-CBC with a SHA-1 MAC, which older devices (Windows before
Server 2019 / 10 1709, older macOS and iOS keychains, older Android, embedded stacks)
need; OpenSSL 3 reads both without ``-legacy`` (only RC2 needs it).
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

ENCRYPTIONS = ("modern", "legacy")
MODERN_ROUNDS = 100_000
LEGACY_ROUNDS = 2048  # OpenSSL's classic PKCS12_DEFAULT_ITER; old devices are slow


def common_name_of(subject: x509.Name) -> str | None:
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = cns[-1].value if cns else None
    return value if isinstance(value, str) else None


def build_pkcs12(key: Any, certificate: x509.Certificate, chain: list[x509.Certificate] | tuple[x509.Certificate, ...],
                 password: bytes, encryption: str = "modern") -> bytes:
    """Key, certificate and issuer chain under ``password``; the friendlyName is the
    subject's (last) commonName, as devices list it."""
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if encryption == "legacy":
        builder = (builder.kdf_rounds(LEGACY_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                   .hmac_hash(hashes.SHA1()))
    elif encryption == "modern":
        builder = (builder.kdf_rounds(MODERN_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                   .hmac_hash(hashes.SHA256()))
    else:
        raise ValueError(f"unknown PKCS#12 encryption {encryption!r}")
    cn = common_name_of(certificate.subject)
    return pkcs12.serialize_key_and_certificates(
        name=cn.encode() if cn is not None else None, key=key, cert=certificate, cas=list(chain),
        encryption_algorithm=builder.build(password),
    )
