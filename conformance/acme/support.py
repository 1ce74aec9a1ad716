"""Shared pieces of the ACME suites: a served gateway, configurations, a raw JWS client, responders.

- :func:`served` runs the gateway in this process (real sockets, real TLS) on a copy
  of a data directory initialised once per session, so each test starts clean fast.
- :class:`RawClient` speaks ACME with hand-made JWS (josepy keys and algorithms),
  for the requests real clients never send: reused nonces, wrong ``url``, foreign
  ``kid``, another key's signature.
- :class:`Http01Responder`, :class:`TlsAlpn01Responder` and :class:`DnsServer`
  answer challenges on 127.0.0.1 the way clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import josepy
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, free_port, running_gateway
from gateway.config import load_config

_TEMPLATE: Path | None = None
_IDS = itertools.count(1)


def b64url(data: bytes) -> str:
    return josepy.b64.b64encode(data).decode()


async def _template() -> Path:
    """One initialised data directory per test session; tests get copies."""
    global _TEMPLATE
    if _TEMPLATE is None or not (_TEMPLATE / "config.toml").exists():
        from gateway import bootstrap

        root = Path(tempfile.mkdtemp(prefix="acme-template-"))
        await bootstrap.initialize(root / "data")
        _TEMPLATE = root / "data"
    return _TEMPLATE


@contextlib.asynccontextmanager
async def served(tmp_path: Path, *, replicas: str = "auto") -> AsyncIterator[tuple[Any, GatewayInfo]]:
    """The gateway on free ports over a fresh copy of the template data directory.

    ``replicas``: the ``[store] replicas`` setting; ``"yes"`` serves the embedded SQLite
    store as if replicas shared it (nonces recorded in the database).
    """
    data_dir = tmp_path / "data"
    shutil.copytree(await _template(), data_dir)
    if replicas != "auto":
        cfg = load_config(data_dir)
        cfg.store.replicas = replicas
        cfg.save()
    async with running_gateway(data_dir) as pair:
        yield pair


async def new_config(gw: Any, *, profiles: tuple[str, ...] = ("tls-server", "tls-client"),
                     approval: str | None = None, **settings: Any) -> str:
    """A fresh ACME configuration on the issuing CA; returns its id."""
    config_id = f"t{next(_IDS)}-{os.getpid() % 1000}"
    if approval:
        settings["approval"] = approval
    await gw.authority.create_config(config_id, "acme", "issuing", list(profiles), settings=settings)
    return config_id


def directory_url(info: GatewayInfo, config_id: str) -> str:
    return f"{info.https}/acme/{config_id}/directory"


# --- keys and CSRs -------------------------------------------------------------------------
def account_key(kind: str = "EC") -> josepy.JWK:
    if kind == "RSA":
        return josepy.JWKRSA(key=rsa.generate_private_key(65537, 2048))
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def alg_for(key: josepy.JWK) -> str:
    return "RS256" if isinstance(key, josepy.JWKRSA) else "ES256"


def make_csr(names: list[str], key: Any = None, cn: str | None = None) -> tuple[bytes, Any]:
    """DER CSR for DNS names / IP addresses (SANs), optional CN."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER), key


# --- a raw ACME client -------------------------------------------------------------------
def sign_jws(payload: Any, key: josepy.JWK, url: str, *, nonce: str | None, kid: str | None = None,
             alg: str | None = None, extra: dict[str, Any] | None = None, embed_jwk: bool | None = None) -> dict[str, str]:
    """A flattened JWS as a client makes it; ``payload=None`` is POST-as-GET."""
    alg = alg or alg_for(key)
    protected: dict[str, Any] = {"alg": alg, "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid is not None:
        protected["kid"] = kid
    if embed_jwk if embed_jwk is not None else kid is None:
        protected["jwk"] = key.public_key().to_partial_json()
    protected.update(extra or {})
    p64 = b64url(json.dumps(protected).encode())
    body = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    b64 = b64url(body)
    algorithm = josepy.JWASignature.from_json(alg)
    sig = algorithm.sign(key.key, f"{p64}.{b64}".encode())
    return {"protected": p64, "payload": b64, "signature": b64url(sig)}


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def problem(self) -> str:
        doc = self.json or {}
        return str(doc.get("type", "")).rsplit(":", 1)[-1]

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")


@dataclass
class RawClient:
    """Hand-made ACME requests over a real TLS connection."""

    info: GatewayInfo
    config_id: str
    key: josepy.JWK = field(default_factory=account_key)
    kid: str | None = None
    directory: dict[str, Any] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "RawClient":
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.info.ssl_context()))
        self.directory = (await self.get(directory_url(self.info, self.config_id))).json
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def get(self, url: str, method: str = "GET") -> Reply:
        assert self.session is not None
        async with self.session.request(method, url) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def nonce(self) -> str:
        reply = await self.get(self.directory["newNonce"], "HEAD")
        return str(reply.headers["Replay-Nonce"])

    async def post_raw(self, url: str, body: bytes, content_type: str = "application/jose+json") -> Reply:
        assert self.session is not None
        async with self.session.post(url, data=body, headers={"Content-Type": content_type}) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def post(self, url: str, payload: Any = None, *, key: josepy.JWK | None = None,
                   kid: str | None | bool = True, nonce: str | None = None, signed_url: str | None = None,
                   **kw: Any) -> Reply:
        """POST a JWS; ``kid=True`` uses this client's account, ``False`` embeds the jwk."""
        use_kid = self.kid if kid is True else (None if kid is False else kid)
        jws = sign_jws(payload, key or self.key, signed_url or url,
                       nonce=nonce if nonce is not None else await self.nonce(), kid=use_kid, **kw)
        return await self.post_raw(url, json.dumps(jws).encode())

    async def register(self, **payload: Any) -> Reply:
        body = {"termsOfServiceAgreed": True, **payload}
        reply = await self.post(self.directory["newAccount"], body, kid=False)
        if reply.status in (200, 201):
            self.kid = reply.location
        return reply

    async def order(self, *names: str, **extra: Any) -> Reply:
        idents = []
        for n in names:
            try:
                ipaddress.ip_address(n)
                idents.append({"type": "ip", "value": n})
            except ValueError:
                idents.append({"type": "dns", "value": n})
        return await self.post(self.directory["newOrder"], {"identifiers": idents, **extra})

    def key_authorization(self, token: str) -> str:
        return f"{token}.{b64url(self.key.thumbprint())}"

    async def poll(self, url: str, until: tuple[str, ...], attempts: int = 100) -> Reply:
        for _ in range(attempts):
            reply = await self.post(url)
            if reply.status != 200 or (reply.json or {}).get("status") in until:
                return reply
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} never reached {until}: {reply.json}")


# --- challenge responders -----------------------------------------------------------------
class Http01Responder:
    """Serves key authorizations at /.well-known/acme-challenge/<token> on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tokens: dict[str, str] = {}
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.get("Host", ""))
        value = self.tokens.get(request.match_info["token"])
        return web.Response(text=value) if value is not None else web.Response(status=404)

    async def __aenter__(self) -> "Http01Responder":
        app = web.Application()
        app.router.add_get("/.well-known/acme-challenge/{token}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def tls_alpn_certificate(name: str, key_authorization: str, *, critical: bool = True) -> tuple[bytes, bytes]:
    """PEM certificate and key for tls-alpn-01 (RFC 8737 section 3)."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme-tls-alpn")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme-tls-alpn")]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"), b"\x04\x20" + digest),
                       critical=critical)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


class TlsAlpn01Responder:
    """A TLS server on 127.0.0.1 that negotiates acme-tls/1 with one validation certificate."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.snis: list[str | None] = []
        self._server: asyncio.base_events.Server | None = None
        self._ctx: ssl.SSLContext | None = None

    def serve(self, name: str, key_authorization: str, **kw: Any) -> None:
        cert, key = tls_alpn_certificate(name, key_authorization, **kw)
        (self.tmp / "alpn.pem").write_bytes(cert)
        (self.tmp / "alpn.key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tmp / "alpn.pem", self.tmp / "alpn.key")
        ctx.set_alpn_protocols(["acme-tls/1"])
        ctx.sni_callback = lambda sock, sni, c: self.snis.append(sni)  # type: ignore[assignment,return-value]
        self._ctx = ctx

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1)
        except (OSError, ssl.SSLError):
            pass
        writer.close()

    async def __aenter__(self) -> "TlsAlpn01Responder":
        async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._ctx is None:
                writer.close()
                return
            try:
                await writer.start_tls(self._ctx)
            except (OSError, ssl.SSLError):
                writer.close()
                return
            await self._client(reader, writer)

        self._server = await asyncio.start_server(raw, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class DnsServer:
    """A tiny authoritative UDP DNS server on 127.0.0.1 (dnspython wire format): TXT and A records."""

    def __init__(self) -> None:
        self.port = free_port()
        self.txt: dict[str, list[str]] = {}
        self.a: dict[str, str] = {}
        self.queries: list[tuple[str, str]] = []
        self._transport: asyncio.DatagramTransport | None = None

    def answer(self, data: bytes) -> bytes:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= 0x0400  # authoritative
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if rdtype == "TXT" and name in self.txt:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "TXT",
                                                            [f'"{v}"' for v in self.txt[name]]))
        elif rdtype == "A" and name in self.a:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", self.a[name]))
        elif name not in self.txt and name not in self.a:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return bytes(response.to_wire())

    async def __aenter__(self) -> "DnsServer":
        server = self

        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.transport.sendto(server.answer(data), addr)  # type: ignore[attr-defined]

        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._transport is not None
        self._transport.close()


def require_module(name: str, hint: str) -> Any:
    """A Python client library; fails under CI=true when missing, skips the module elsewhere."""
    import importlib

    import pytest

    from conformance.harness import in_ci

    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"client library {name!r} is not installed ({hint})"
        if in_ci():
            pytest.fail(message + " (CI must install it)", pytrace=False)
        pytest.skip(message, allow_module_level=True)
