"""EST upstream (RFC 7030 as a client): another EST server signs what this gateway's
protocols accept.

The gateway sends the device's CSR, unchanged, to ``<url>/simpleenroll`` with HTTP
Basic or a TLS client certificate, and records what comes back. Renewals go there too, not
to ``/simplereenroll``: RFC 7030 4.2.2 authenticates a reenroll with the certificate being
renewed, whose key only the device has (gateway/DIVERGENCES.md). The upstream applies its
own policy: the gateway's profile checks ran before (the request was accepted here
first), but subject or SAN overrides of the gateway's configuration do not reach it.
``202 Accepted`` with Retry-After is a request the upstream holds: the gateway keeps the
CSR as the handle and sends it again when polled (RFC 7030 4.2.3). EST has no revocation:
revoking here records the revocation and audits that the upstream was not told
(``revoke_not_upstream``); the upstream CA must be told by its operator.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ...errors import BadRequest, PolicyViolation, Unavailable
from ...sealing import Sealer
from ...store.records import CARecord
from ..backend import Capabilities, PendingUpstream, Signed, SignRequest, SignResult
from .base import UpstreamCA
from .http import Reply, UpstreamHttp, retry_after, seal_credentials, ssl_context

KIND = "est"
log = logging.getLogger(__name__)


def _spki(key: Any) -> bytes:
    out: bytes = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return out


UNPARSEABLE = (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType)
"""What cryptography raises for certificates it cannot read (several are no ValueError)."""


def parse_certs_only(body: bytes) -> list[x509.Certificate]:
    """A base64 (or DER) PKCS#7 certs-only body, as EST answers /cacerts and /simpleenroll."""
    raw = body.strip()
    try:
        der = base64.b64decode(b"".join(raw.split()), validate=True)
    except ValueError:
        der = raw
    try:
        certs = pkcs7.load_der_pkcs7_certificates(der)
        for cert in certs:  # cryptography parses these lazily: fail here, not in whoever reads them
            cert.subject, cert.issuer, cert.extensions, cert.public_key()
    except UNPARSEABLE:
        raise Unavailable("the upstream EST server's answer is not a PKCS#7 certs-only message "
                          "of certificates that parse") from None
    return certs


def issuing_and_chain(certs: list[x509.Certificate]) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """From an unordered /cacerts bag: the CA that issues (the one no other certificate
    names as issuer) and its issuers up to the root."""
    cas = [c for c in certs if _is_ca(c)] or certs
    leaves = [c for c in cas if not any(o is not c and o.issuer == c.subject for o in cas)]
    if len(leaves) != 1:
        names = ", ".join(sorted(c.subject.rfc4514_string() for c in leaves)) or "none"
        raise BadRequest(f"the upstream's /cacerts does not name one issuing CA (found: {names})")
    issuing = leaves[0]
    chain, current = [], issuing
    while current.issuer != current.subject:
        parent = next((c for c in cas if c.subject == current.issuer), None)
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return issuing, chain


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


class EstUpstream(UpstreamCA):
    capabilities = Capabilities(needs_csr=True, holds=True)
    protocol = "EST"

    def __init__(self, record: CARecord, sealer: Sealer) -> None:
        super().__init__(record, sealer, peer="EST server", url=str(record.backend_settings.get("url", "")).rstrip("/"))
        self._headers = {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"}
        if self._username and self._password:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(self._username, self._password)

    async def _enroll(self, csr_der: bytes) -> SignResult:
        reply = await self._http.request(
            "POST", f"{self.url}/simpleenroll", data=base64.encodebytes(csr_der), headers=self._headers)
        if reply.status == 202:
            return PendingUpstream(handle=base64.b64encode(csr_der).decode(), retry_after=retry_after(reply.headers))
        if reply.status != 200:
            raise _refusal(self.id, reply)
        csr = x509.load_der_x509_csr(csr_der)
        wanted = _spki(csr.public_key())
        for cert in parse_certs_only(reply.body):
            if _spki(cert.public_key()) == wanted:
                return Signed(cert)
        raise Unavailable(f"CA {self.id}: the upstream EST server returned no certificate for the CSR's key")

    async def sign(self, request: SignRequest) -> SignResult:
        if request.csr is None:
            raise Unavailable(f"CA {self.id} is an EST upstream and signs CSRs only; this request has none")
        return await self._enroll(request.csr.public_bytes(serialization.Encoding.DER))

    async def poll(self, handle: str) -> SignResult:
        return await self._enroll(base64.b64decode(handle))


def _refusal(ca_id: str, reply: Reply) -> Exception:
    if reply.status == 401:  # the gateway's own credentials: an operator's problem, not the client's
        return Unavailable(f"CA {ca_id}: the upstream EST server refused the gateway's credentials "
                           f"(HTTP {reply.status})")
    if 400 <= reply.status < 500:
        return PolicyViolation(f"the upstream EST server refused the request (HTTP {reply.status}: {reply.text()})")
    return Unavailable(f"CA {ca_id}: the upstream EST server failed (HTTP {reply.status}: {reply.text()})")


async def discover(url: str, trust_pem: str | None) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The upstream's issuing CA and chain from ``<url>/cacerts`` (when the CA is created)."""
    http = UpstreamHttp("new CA", f"EST server {url}", ssl_context(trust_pem))
    try:
        reply = await http.request("GET", f"{url.rstrip('/')}/cacerts")
    finally:
        await http.close()
    if reply.status != 200:
        raise BadRequest(f"the upstream's /cacerts answered HTTP {reply.status}: {reply.text()}")
    return issuing_and_chain(parse_certs_only(reply.body))


def settings_for(ca_id: str, sealer: Sealer, *, url: str, username: str | None, password: str | None,
                 client_certificate_pem: str | None, client_key_pem: bytes | None,
                 trust_pem: str | None) -> dict[str, Any]:
    """The CA record's ``backend_settings``, with the password and key sealed to this CA."""
    if not url.startswith("https://"):
        raise BadRequest("the EST upstream URL must be https://host/.well-known/est[/label]")
    sealed = seal_credentials(ca_id, sealer, peer="EST upstream", username=username, password=password,
                              client_certificate_pem=client_certificate_pem, client_key_pem=client_key_pem)
    return {"url": url.rstrip("/"), "trust_pem": trust_pem, **sealed}

