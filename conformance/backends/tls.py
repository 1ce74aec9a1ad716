"""TLS for the suites' own receivers (webhooks, distribution endpoints, SMTP): a localhost
certificate of their own, and optionally a required client certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

from bench.tlsutil import write_localhost_certificate


def server_context(workdir: Path, name: str, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context over ``<workdir>/<name>.pem`` (written now; trust it as the CA) and
    its key; with ``client_ca``, clients must present a certificate chaining to it."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / f"{name}.pem", workdir / f"{name}.key"
    write_localhost_certificate(cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context
