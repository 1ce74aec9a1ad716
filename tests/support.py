"""Helpers shared by tests: CSRs made with real keys, and the real openssl CLI."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway import keys


def make_key(algorithm: str = "EC-P256"):  # type: ignore[no-untyped-def]
    if algorithm == "RSA-1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return keys.generate_private_key(algorithm)


def make_csr(
    cn: str = "device-1.example.com",
    sans: Iterable[str] = ("device-1.example.com",),
    key=None,  # type: ignore[no-untyped-def]
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
) -> tuple[x509.CertificateSigningRequest, object]:
    key = key or make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([])
    )
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    algorithm = keys.signature_hash_for(key) or hashes.SHA256()
    return builder.sign(key, algorithm), key


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def tamper_signature(csr: x509.CertificateSigningRequest) -> bytes:
    """DER of the CSR with the last signature byte flipped (parses, fails PoP)."""
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return bytes(der)


def openssl(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["openssl", *args], input=input.decode() if input else None,
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path
