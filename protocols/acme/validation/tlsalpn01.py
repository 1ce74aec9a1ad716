"""tls-alpn-01 (RFC 8737; RFC 8738 section 6 for IP addresses).

A TLS handshake to ``<identifier>:<tlsalpn01_port>`` offering only the
``acme-tls/1`` protocol; the self-signed certificate must name exactly the
identifier and carry the critical acmeIdentifier extension holding
SHA-256(key authorization). For an IP address the SNI is its reverse-DNS name.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl

from cryptography import x509

from .. import problems
from ..identifiers import Identifier
from ..problems import Problem
from ..settings import AcmeSettings
from .resolve import ResolutionError, addresses

ALPN = "acme-tls/1"
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate is self-signed by design
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ALPN])
    return ctx


def sni_for(ident: Identifier) -> str:
    if ident.type == "ip":
        return ipaddress.ip_address(ident.value).reverse_pointer
    return ident.value


async def _handshake(address: str, port: int, sni: str, timeout: float) -> tuple[str | None, bytes | None]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address, port, ssl=_context(), server_hostname=sni), timeout
    )
    try:
        obj = writer.get_extra_info("ssl_object")
        return obj.selected_alpn_protocol(), obj.getpeercert(binary_form=True)
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass


def check_certificate(der: bytes, ident: Identifier, key_authorization: str) -> str | None:
    """Why the validation certificate fails, or None."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (ValueError, x509.ExtensionNotFound):
        return "the certificate has no readable subjectAltName"
    expected: x509.GeneralName = (
        x509.IPAddress(ipaddress.ip_address(ident.value)) if ident.type == "ip" else x509.DNSName(ident.value)
    )
    if len(sans) != 1 or sans[0] != expected:
        return f"the certificate must name exactly {ident.value}"
    try:
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        return "the certificate lacks the acmeIdentifier extension"
    if not ext.critical:
        return "the acmeIdentifier extension must be critical"
    digest = hashlib.sha256(key_authorization.encode()).digest()
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if value != b"\x04\x20" + digest:
        return "the acmeIdentifier extension does not match the key authorization"
    return None


async def validate(ident: Identifier, token: str, key_authorization: str, settings: AcmeSettings) -> Problem | None:
    port = settings.tlsalpn01_port
    try:
        targets = await addresses(ident.value, settings)
    except ResolutionError as exc:
        return problems.validation_problem("dns", str(exc))
    last: Problem | None = None
    for address in targets:
        try:
            alpn, der = await _handshake(address, port, sni_for(ident), settings.validation_timeout)
        except asyncio.TimeoutError:
            last = problems.validation_problem("connection", f"timeout connecting to {ident.value}:{port}")
            continue
        except ssl.SSLError as exc:
            last = problems.validation_problem("tls", f"TLS handshake with {ident.value}:{port} failed: {exc.reason}")
            continue
        except OSError as exc:
            last = problems.validation_problem("connection", f"cannot connect to {ident.value}:{port}: {exc.strerror or exc}")
            continue
        if alpn != ALPN:
            return problems.validation_problem("tls", f"{ident.value}:{port} did not negotiate {ALPN}")
        if der is None:
            return problems.validation_problem("tls", f"{ident.value}:{port} sent no certificate")
        reason = check_certificate(der, ident, key_authorization)
        if reason:
            return problems.validation_problem("incorrectResponse", reason)
        return None
    return last
