"""A lean async ACME (RFC 8555) client for load: one account per worker, then per
certificate the whole flow: newOrder, authorization, challenge, finalize with a fresh
EC P-256 CSR, certificate download.

It polls without honouring ``Retry-After`` (short fixed backoff, the same for every
server) because a benchmark wants to know how soon a server is done, not how long it
asks clients to wait. Identifiers are unique per certificate, so no server can skip
the challenge by reusing an authorization.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .jws import AccountKey, b64url

JOSE = "application/jose+json"
_BACKOFF = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
MAX_POLLS = 200
BAD_NONCE = "urn:ietf:params:acme:error:badNonce"


class AcmeError(Exception):
    """The server answered with a problem document or an unexpected status."""

    def __init__(self, what: str, status: int, body: bytes) -> None:
        self.status = status
        try:
            doc = json.loads(body)
            self.type = str(doc.get("type", ""))
            detail = f"{self.type}: {doc.get('detail', '')}"
        except (ValueError, AttributeError):
            self.type = ""
            detail = body[:200].decode("utf-8", "replace")
        super().__init__(f"{what}: HTTP {status} {detail}")


@dataclass(frozen=True)
class Issued:
    """One certificate as downloaded; verified after the timed window."""

    name: str
    chain_pem: bytes
    public_key_der: bytes
    jws_count: int


def make_csr(name: str) -> tuple[bytes, bytes]:
    """(CSR DER, public key DER) for a fresh EC P-256 key naming ``name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return csr.public_bytes(serialization.Encoding.DER), public


class AcmeWorker:
    """One ACME client with its own account and keep-alive connection."""

    def __init__(self, directory_url: str, ssl_context: ssl.SSLContext, name_prefix: str,
                 request_timeout: float = 30.0) -> None:
        self.directory_url = directory_url
        self.ssl_context = ssl_context
        self.name_prefix = name_prefix
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)
        self.key = AccountKey()
        self.session: aiohttp.ClientSession | None = None
        self.directory: dict[str, Any] = {}
        self.kid: str | None = None
        self.nonce: str | None = None
        self.jws_count = 0
        self.bad_nonces = 0  # badNonce answers resent with a fresh nonce (RFC 8555 6.5)
        self.retry_after: str | None = None  # the last answer's Retry-After (None: it had none)

    # --- transport ---------------------------------------------------------------
    async def setup(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.ssl_context, limit=4)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        async with self.session.get(self.directory_url) as resp:
            self.retry_after = resp.headers.get("Retry-After")
            if resp.status != 200:
                raise AcmeError("directory", resp.status, await resp.read())
            self.directory = await resp.json(content_type=None)
        status, headers, body = await self.post(
            self.directory["newAccount"], {"termsOfServiceAgreed": True}, use_kid=False
        )
        if status not in (200, 201):
            raise AcmeError("newAccount", status, body)
        self.kid = headers["Location"]

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _fresh_nonce(self) -> str:
        assert self.session is not None
        async with self.session.head(self.directory["newNonce"]) as resp:
            self.retry_after = resp.headers.get("Retry-After")
            nonce = resp.headers.get("Replay-Nonce")
        if not nonce:
            raise AcmeError("newNonce", resp.status, b"no Replay-Nonce")
        return nonce

    async def post(self, url: str, payload: Any | None, *, use_kid: bool = True,
                   accept: str | None = None) -> tuple[int, Any, bytes]:
        """Signed POST (payload None = POST-as-GET); retries a badNonce up to three times."""
        assert self.session is not None
        for _ in range(4):
            nonce = self.nonce or await self._fresh_nonce()
            self.nonce = None
            body = self.key.sign(url, nonce, payload, self.kid if use_kid else None)
            self.jws_count += 1
            headers = {"Content-Type": JOSE}
            if accept:
                headers["Accept"] = accept
            async with self.session.post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                self.nonce = resp.headers.get("Replay-Nonce")
                self.retry_after = resp.headers.get("Retry-After")
                if resp.status == 400 and BAD_NONCE.encode() in data:
                    self.bad_nonces += 1
                    continue
                return resp.status, resp.headers, data
        raise AcmeError(url, 400, b'{"type": "' + BAD_NONCE.encode() + b'", "detail": "four in a row"}')

    async def _get_json(self, what: str, url: str) -> dict[str, Any]:
        status, _, body = await self.post(url, None)
        if status != 200:
            raise AcmeError(what, status, body)
        return json.loads(body)

    async def _poll(self, what: str, url: str, doc: dict[str, Any], done: str) -> dict[str, Any]:
        """POST-as-GET until status is ``done`` (bounded); 'invalid' is an error."""
        for i in range(MAX_POLLS):
            status = doc.get("status")
            if status == done:
                return doc
            if status == "invalid":
                raise AcmeError(what, 200, json.dumps(doc.get("error") or doc).encode())
            await asyncio.sleep(_BACKOFF[min(i, len(_BACKOFF) - 1)])
            doc = await self._get_json(what, url)
        raise AcmeError(what, 200, f"still {doc.get('status')!r} after {MAX_POLLS} polls".encode())

    # --- one certificate --------------------------------------------------------------
    async def issue(self, index: int) -> Issued:
        name = f"{self.name_prefix}-{index if index >= 0 else 'w' + str(-index)}.bench.example.com"
        before = self.jws_count
        status, headers, body = await self.post(
            self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
        )
        if status != 201:
            raise AcmeError("newOrder", status, body)
        order_url = headers["Location"]
        order = json.loads(body)
        for authz_url in order["authorizations"]:
            authz = await self._get_json("authorization", authz_url)
            if authz.get("status") != "valid":
                challenges = authz.get("challenges", [])
                chosen = next((c for c in challenges if c.get("type") == "http-01"), None) or challenges[0]
                if chosen.get("status") not in ("processing", "valid"):
                    status, _, body = await self.post(chosen["url"], {})
                    if status != 200:
                        raise AcmeError("challenge", status, body)
                    chosen = json.loads(body)
                if chosen.get("status") != "valid":
                    await self._poll("authorization", authz_url, authz, "valid")
        csr, public = make_csr(name)
        status, _, body = await self.post(order["finalize"], {"csr": b64url(csr)})
        if status != 200:
            raise AcmeError("finalize", status, body)
        order = await self._poll("order", order_url, json.loads(body), "valid")
        status, _, chain = await self.post(order["certificate"], None, accept="application/pem-certificate-chain")
        if status != 200:
            raise AcmeError("certificate", status, chain)
        return Issued(name, chain, public, self.jws_count - before)
