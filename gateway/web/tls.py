"""TLS for the HTTPS listener: TLS 1.2+ with ECDHE + AES-GCM (and TLS 1.3), optional client certs.

The listener *requests* but does not require a client certificate; one that is
presented must chain to a gateway CA or a configured trust anchor. Protocols read
the verified peer certificate from the connection to authenticate clients.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TLS12_CIPHERS = "ECDHE+AESGCM"


def server_context(
    cert_file: Path,
    key_file: Path,
    client_cas: list[x509.Certificate],
    request_client_certificate: bool = True,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if request_client_certificate and client_cas:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(
            cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in client_cas)
        )
    return ctx


def load_pem_bundle(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def peer_certificate(transport: object) -> x509.Certificate | None:
    """The verified client certificate on a TLS connection, if one was presented."""
    ssl_object = getattr(transport, "get_extra_info", lambda _n: None)("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None
