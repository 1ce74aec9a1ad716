"""HTTPS to an upstream CA: its trust anchors, an optional client certificate, bounded
waits, and every transport failure as one :class:`gateway.errors.Unavailable`."""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import aiohttp

from ...errors import BadRequest, Unavailable
from ..pem import load_certificate

if TYPE_CHECKING:
    from ...sealing import Sealer

TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10)
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def text(self, limit: int = 200) -> str:
        """The start of the body, for an error message (never a whole page)."""
        return " ".join(self.body[:limit].decode("utf-8", "replace").split())


def ssl_context(trust_pem: str | None, client_cert_pem: str | None = None,
                client_key_pem: bytes | None = None) -> ssl.SSLContext:
    """Verify the upstream against ``trust_pem`` (else the system's roots); present a
    client certificate when given. The key is written to a private temporary file only
    for the moment ``load_cert_chain`` reads it (the ssl module takes no bytes)."""
    context = ssl.create_default_context(cadata=trust_pem) if trust_pem else ssl.create_default_context()
    if client_cert_pem and client_key_pem:
        with tempfile.TemporaryDirectory(prefix="gateway-upstream-") as tmp:
            cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            with open(cert_path, "w") as f:
                f.write(client_cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(client_key_pem)
            context.load_cert_chain(cert_path, key_path)
    return context


class UpstreamHttp:
    """One upstream's connection pool (made on first use, inside the running loop)."""

    def __init__(self, owner: str, what: str, context: ssl.SSLContext) -> None:
        """``owner`` starts every error message (``CA corp-est``); ``what`` names the peer."""
        self.owner, self.what, self._ssl = owner, what, context
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str, *, data: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> Reply:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, trust_env=False)
        try:
            async with self._session.request(method, url, data=data, headers=headers,
                                             ssl=self._ssl, allow_redirects=False) as resp:
                body = await resp.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise Unavailable(f"{self.owner}: the {self.what} sent more than {MAX_BODY} bytes")
                return Reply(resp.status, dict(resp.headers), body)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise Unavailable(f"{self.owner}: the {self.what}'s TLS certificate is not trusted "
                              f"({exc.certificate_error})") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise Unavailable(f"{self.owner}: the {self.what} is unreachable "
                              f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def retry_after(headers: Mapping[str, Any], default: int = 60) -> int:
    value = str(headers.get("Retry-After", "")).strip()
    return max(1, min(int(value), 86400)) if value.isdigit() else default


def seal_credentials(owner: str, sealer: "Sealer", *, peer: str, username: str | None, password: str | None,
                     client_certificate_pem: str | None, client_key_pem: bytes | None,
                     required: bool = True) -> dict[str, Any]:
    """Settings fields for HTTP Basic (password sealed) and/or a TLS client certificate (key
    sealed), both bound to ``owner`` (a CA or destination id); each half of a pair refused
    alone, and at least one kind when ``required``. ``peer`` names the far side in messages."""
    if bool(username) != bool(password):
        raise BadRequest(f"{peer} authentication needs both a username and a password")
    if bool(client_certificate_pem) != bool(client_key_pem):
        raise BadRequest(f"a {peer} client certificate needs its key (and the key its certificate)")
    if required and not username and not client_certificate_pem:
        raise BadRequest(f"the {peer} needs credentials: a username and password, or a client certificate")
    out: dict[str, Any] = {}
    if username and password:
        out.update(username=username, password=sealer.seal(password.encode(), f"{owner}:password"))
    if client_certificate_pem and client_key_pem:
        load_certificate(client_certificate_pem)  # refuse a broken file now, not at the first request
        out.update(client_certificate=client_certificate_pem, client_key=sealer.seal(client_key_pem, f"{owner}:client_key"))
    return out


def open_credentials(owner: str, sealer: "Sealer", settings: Mapping[str, Any], *, label: str,
                     peer: str) -> tuple[str | None, str | None, UpstreamHttp]:
    """What :func:`seal_credentials` sealed, opened: (username, password, the HTTPS pool with
    the trust anchors and client certificate of ``settings``)."""
    username = str(settings["username"]) if settings.get("username") else None
    password = sealer.unseal(str(settings["password"]), f"{owner}:password").decode() if username else None
    key = sealer.unseal(str(settings["client_key"]), f"{owner}:client_key") if settings.get("client_key") else None
    context = ssl_context(settings.get("trust_pem"), settings.get("client_certificate"), key)
    return username, password, UpstreamHttp(label, peer, context)
