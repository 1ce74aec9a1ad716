"""Who is calling the admin API: an API key, or a registered TLS client certificate.

API keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and are
looked up by SHA-256 only. An operator may instead register a client certificate:
its API key record holds ``"cert:" + sha256(DER).hex()`` in ``key_sha256``. The TLS
handshake proves the peer holds that certificate's key, so an exact fingerprint
match authenticates without any chain building. A key, when presented, always
decides (a wrong key is refused even if a registered certificate came with it).
Either carries a role (:mod:`.roles`) and may expire. On the console's internal
admin listener a console session (``X-Console-Session``) authenticates too, as the
console user with that user's role (:mod:`gateway.console.sessions`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import Forbidden, Unauthorized
from ..runtime import Gateway
from ..secrets import api_key_hash
from ..store.records import ApiKeyRecord
from .roles import READ_METHODS, may

REALM = 'Bearer realm="gateway-admin"'
CERT_PREFIX = "cert:"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; ``actor`` is what audit events record."""

    kind: str  # "api_key" | "certificate" | "console"
    key_id: str
    actor: str  # the API key's name, the client certificate's subject, or "console:<user>"
    role: str = "owner"  # one of gateway.admin.roles.ROLES


PRINCIPAL = web.RequestKey("admin_principal", Principal)


def client_certificate_key(cert: x509.Certificate | bytes) -> str:
    """The ``key_sha256`` value that registers a client certificate for admin access."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return CERT_PREFIX + hashlib.sha256(der).hexdigest()


def client_certificate_record(name: str, cert: x509.Certificate, role: str = "admin") -> ApiKeyRecord:
    """An API key record to insert (``q.api_keys.insert``) for an admin client certificate."""
    return ApiKeyRecord(id=uuid.uuid4().hex, name=name, key_sha256=client_certificate_key(cert), role=role)


def _usable(rec: ApiKeyRecord | None, now: dt.datetime) -> bool:
    return rec is not None and not rec.revoked and (rec.expires_at is None or rec.expires_at > now)


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
        return value.strip()
    key = request.headers.get("X-API-Key")
    if key is not None:
        if not key.strip():
            raise Unauthorized("the X-API-Key header is empty")
        return key.strip()
    return None


def peer_certificate(request: web.Request) -> bytes | None:
    """DER of the TLS client certificate, if the peer presented one."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


async def _console_principal(gateway: Gateway, token: str) -> Principal:
    from ..console.sessions import sessions_for

    session = await sessions_for(gateway).find(token)
    return Principal("console", session.username, f"console:{session.username}", session.role)


async def authenticate(request: web.Request, gateway: Gateway, *, console: bool = False) -> Principal:
    """The caller; ``console``: on the console's private socket, where only console
    sessions authenticate (gateway.console.internal)."""
    if console:
        token = request.headers.get("X-Console-Session")
        if not token:
            raise Unauthorized("a console session is required")
        return await _console_principal(gateway, token)
    key = presented_key(request)
    if key is not None:
        async with gateway.store.read() as q:
            rec = await q.api_keys.by_hash(api_key_hash(key))
        if rec is None or not _usable(rec, gateway.clock()) or rec.key_sha256.startswith(CERT_PREFIX):
            raise Unauthorized("invalid, expired or revoked API key")
        return Principal("api_key", rec.id, rec.name, rec.role)
    der = peer_certificate(request)
    if der is not None:
        async with gateway.store.read() as q:
            rec = await q.api_keys.by_hash(client_certificate_key(der))
        if rec is None or not _usable(rec, gateway.clock()):
            raise Unauthorized("the client certificate is not registered for admin access")
        try:
            subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            subject = ""
        return Principal("certificate", rec.id, subject or rec.name, rec.role)
    raise Unauthorized("an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")


def authorize(principal: Principal, method: str, area: str) -> None:
    """403 unless the principal's role may call ``method`` in ``area`` (gateway.admin.roles)."""
    if not may(principal.role, area, method):
        what = "read" if method.upper() in READ_METHODS else "change"
        raise Forbidden(f"the {principal.role} role may not {what} {area}")


def actor(request: web.Request) -> str:
    return request[PRINCIPAL].actor
