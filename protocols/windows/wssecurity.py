"""Who is calling a CES endpoint: a WS-Security UsernameToken or a TLS client certificate.

The auth seam is :class:`Caller`: every way in (UsernameToken here, the TLS client
certificate of the Certificate endpoints, Negotiate/Kerberos next) ends in one, and the
enrollment code reads only it. A new method adds a function that returns a Caller.

UsernameToken (OASIS WSS UsernameToken Profile 1.1), read namespace-strictly from the
SOAP header's ``wsse:Security``:

- ``Password`` must be ``#PasswordText`` (also when ``Type`` is absent, the profile's
  default). ``#PasswordDigest`` is refused: the gateway keeps only scrypt hashes, so it
  cannot compute SHA-1(nonce + created + password) — and a digest over TLS adds nothing.
- A ``wsu:Timestamp`` beside it (what WCF clients add) is not read: it proves nothing
  a replay could not copy, and recorded requests carry stale ones.
- The password is checked against the configuration's enrollment credentials
  (``door.credentials``, kind ``user``), with the store-held lockout.
- Replay: a ``Created`` must lie within :data:`WINDOW` of the gateway clock; a
  ``Nonce`` needs a ``Created`` (else it would have to be remembered for ever), and
  the pair is single use: its digest is inserted in ``windows_usernametoken_nonces``
  (a primary key, so two workers or replicas racing with one token cannot both win)
  before the password is checked. Windows' own clients send neither over HTTPS (the
  Windows 10 MDM capture): such a token is accepted unless the caller requires
  freshness (``require_fresh=True``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Column, Index, MetaData, String, Table, delete

from gateway.columns import NAMING_CONVENTION, UTCDateTime
from gateway.door import DEFAULT_LOCKOUT, CertificateRecord, Door, LockoutPolicy
from gateway.errors import Conflict, ErrorKind, GatewayError
from gateway.web.tls import peer_certificate

from gateway.edge import xml
from gateway.edge.xml import Element

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_TOKEN_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = _TOKEN_PROFILE + "#PasswordText"
PASSWORD_DIGEST = _TOKEN_PROFILE + "#PasswordDigest"
BASE64_BINARY = WSSE + "#Base64Binary"

WINDOW = dt.timedelta(minutes=5)
"""How far a token's ``Created`` may lie from the gateway clock, either way."""
LOCKOUT: LockoutPolicy = DEFAULT_LOCKOUT
MAX_NONCE_BYTES = 64
MAX_FIELD_CHARS = 1024

metadata = MetaData(naming_convention=NAMING_CONVENTION)

nonces = Table(
    "windows_usernametoken_nonces",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 of config, user, nonce, created
    Column("config_id", String(64), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "expires_at"),
)
"""Seen (Nonce, Created) pairs until their Created leaves the window (``migrations/``)."""


# --- errors -------------------------------------------------------------------------------


class WsSecurityError(GatewayError):
    """A refused security header; ``fault`` is the WS-Security fault code's local name
    (``wsse:InvalidSecurity``, ...), for the SOAP fault's Subcode."""

    kind = ErrorKind.UNAUTHORIZED
    fault = "InvalidSecurity"

    def __init__(self, detail: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(detail, kind=kind)


class InvalidSecurity(WsSecurityError):
    """The header is malformed."""

    kind = ErrorKind.BAD_REQUEST
    fault = "InvalidSecurity"


class UnsupportedSecurityToken(WsSecurityError):
    """A token form this service does not take (PasswordDigest, an unknown Type)."""

    kind = ErrorKind.BAD_REQUEST
    fault = "UnsupportedSecurityToken"


class FailedAuthentication(WsSecurityError):
    """Wrong user name or password, locked out, no token, a refused certificate."""

    kind = ErrorKind.UNAUTHORIZED
    fault = "FailedAuthentication"


class MessageExpired(WsSecurityError):
    """``Created`` outside the window, or a (Nonce, Created) pair seen before."""

    kind = ErrorKind.UNAUTHORIZED
    fault = "MessageExpired"


# --- the caller --------------------------------------------------------------------------


@dataclass(frozen=True)
class KerberosPrincipal:
    """A Negotiate caller's client principal (:mod:`.negotiate`), for a directory lookup."""

    name: str  # "alice", or "WS1$" for a computer account
    realm: str  # "GW.TEST"
    kind: str  # "user" or "computer"

    @property
    def text(self) -> str:
        return f"{self.name}@{self.realm}"


@dataclass(frozen=True)
class Caller:
    """An authenticated CES client, whatever the method (``username``, ``certificate``,
    ``kerberos``)."""

    method: str
    name: str  # the user name, the certificate's subject (RFC 4514), or the principal
    credential_id: str | None = None
    certificate: x509.Certificate | None = None
    record: CertificateRecord | None = None  # the store's record of that certificate
    principal: KerberosPrincipal | None = None  # method "kerberos"

    @property
    def actor(self) -> str:
        """For the audit trail."""
        return f"windows-{self.method}:{self.name}"

    @property
    def key(self) -> str:
        """A stable identity: a pending request is answered only to the caller who made it."""
        if self.record is not None:
            return f"cert:{self.record.fingerprint_sha256}"
        return f"{self.method}:{self.name}"


# --- UsernameToken -----------------------------------------------------------------------


@dataclass(frozen=True)
class UsernameToken:
    username: str
    password: str = field(repr=False)
    nonce: bytes | None = None
    created: dt.datetime | None = None


_DATETIME = re.compile(
    r"(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)"
)


def parse_datetime(value: str) -> dt.datetime:
    """An xs:dateTime with its time zone (WSS requires UTC; an offset is converted)."""
    m = _DATETIME.fullmatch(value.strip())
    if m is None:
        raise InvalidSecurity("wsu:Created is not an xs:dateTime with a time zone")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = m.group(7)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    zone = m.group(8)
    tz = dt.timezone.utc if zone == "Z" else dt.timezone(
        (1 if zone[0] == "+" else -1) * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidSecurity("wsu:Created is not a valid date and time") from None


def _field(el: Element, local: str, ns: str = WSSE) -> str | None:
    try:
        value = xml.child_text(el, ns, local)
    except xml.XmlError as exc:
        raise InvalidSecurity(f"wsse:{local}: {exc.detail}") from None
    if value is not None and len(value) > MAX_FIELD_CHARS:
        raise InvalidSecurity(f"wsse:{local} is too long")
    return value


def parse_username_token(security: Element | None) -> UsernameToken | None:
    """The UsernameToken of the ``wsse:Security`` header block (``Envelope.security``,
    which the envelope parser has already made unique), None when there is none."""
    if security is None:
        return None
    tokens = xml.children(security, WSSE, "UsernameToken")
    if not tokens:
        return None
    if len(tokens) > 1:
        raise InvalidSecurity("more than one wsse:UsernameToken")
    token = tokens[0]
    username = _field(token, "Username")
    if not username:
        raise InvalidSecurity("wsse:UsernameToken has no Username")
    password_el = xml.children(token, WSSE, "Password")
    if len(password_el) != 1:
        raise InvalidSecurity("wsse:UsernameToken needs exactly one Password")
    kind = password_el[0].get("Type")
    if kind is None:  # Windows qualifies it (wsse:Type); the profile leaves it unqualified
        kind = xml.attr(password_el[0], WSSE, "Type")
    kind = (kind or PASSWORD_TEXT).strip()
    if kind == PASSWORD_DIGEST:
        raise UnsupportedSecurityToken(
            "PasswordDigest is not supported: send the password as PasswordText over HTTPS")
    if kind != PASSWORD_TEXT:
        raise UnsupportedSecurityToken(f"unknown wsse:Password Type {kind[:100]!r}")
    password = _raw_text(password_el[0])
    nonce = _nonce(token)
    created_text = _field(token, "Created", WSU)
    created = parse_datetime(created_text) if created_text is not None else None
    return UsernameToken(username, password, nonce, created)


def _raw_text(el: Element) -> str:
    """Character content as sent (a password may begin or end with a space)."""
    if xml.elements(el):
        raise InvalidSecurity("wsse:Password must hold text, not elements")
    value = "".join([el.text or ""] + [c.tail or "" for c in el])
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidSecurity("wsse:Password is too long")
    return value


def _nonce(token: Element) -> bytes | None:
    found = xml.children(token, WSSE, "Nonce")
    if not found:
        return None
    if len(found) > 1:
        raise InvalidSecurity("more than one wsse:Nonce")
    encoding = (found[0].get("EncodingType") or BASE64_BINARY).strip()
    if encoding != BASE64_BINARY:
        raise UnsupportedSecurityToken("wsse:Nonce must be Base64Binary")
    value = _field(token, "Nonce") or ""
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecurity("wsse:Nonce is not base64") from None
    if not 1 <= len(raw) <= MAX_NONCE_BYTES:
        raise InvalidSecurity(f"wsse:Nonce must be 1-{MAX_NONCE_BYTES} bytes")
    return raw


def check_freshness(token: UsernameToken, now: dt.datetime, *, require_fresh: bool = False) -> None:
    """The window rule (module docstring); the single-use rule is :func:`consume_nonce`."""
    if token.nonce is not None and token.created is None:
        raise InvalidSecurity("a wsse:Nonce needs a wsu:Created")
    if token.created is None:
        if require_fresh:
            raise MessageExpired("this service requires wsse:Nonce and wsu:Created in the UsernameToken")
        return
    if require_fresh and token.nonce is None:
        raise MessageExpired("this service requires a wsse:Nonce in the UsernameToken")
    if abs(now - token.created) > WINDOW:
        raise MessageExpired("wsu:Created is outside the accepted time window")


def nonce_digest(config_id: str, token: UsernameToken) -> str:
    assert token.nonce is not None and token.created is not None
    h = hashlib.sha256()
    for part in (config_id.encode(), token.username.encode(), token.nonce,
                 token.created.isoformat().encode()):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()


async def consume_nonce(door: Door, config_id: str, token: UsernameToken) -> None:
    """Record the (Nonce, Created) pair; MessageExpired if any process saw it before.
    Pairs whose Created has left the window are deleted on the way (they can no longer
    be replayed: the window check refuses them first)."""
    if token.nonce is None or token.created is None:
        return
    now = door.clock()
    try:
        async with door.tables.transaction() as conn:
            await conn.execute(delete(nonces).where(nonces.c.expires_at < now))
            await conn.execute(nonces.insert().values(
                digest=nonce_digest(config_id, token), config_id=config_id,
                expires_at=token.created + WINDOW,
            ))
    except Conflict:
        raise MessageExpired("this UsernameToken was used before (replay)") from None


async def username_caller(door: Door, config_id: str, security: Element | None, *,
                          require_fresh: bool = False) -> Caller:
    """Authenticate the UsernameToken of the ``wsse:Security`` block against
    ``config_id``'s users."""
    token = parse_username_token(security)
    if token is None:
        raise FailedAuthentication("this endpoint requires a WS-Security UsernameToken")
    check_freshness(token, door.clock(), require_fresh=require_fresh)
    await consume_nonce(door, config_id, token)
    try:
        info = await door.credentials.verify(config_id, token.username, token.password, lockout=LOCKOUT)
    except GatewayError as exc:
        if exc.kind is ErrorKind.UNAUTHORIZED:
            raise FailedAuthentication(exc.detail) from None
        raise
    return Caller("username", info.username or token.username, credential_id=info.id)


# --- TLS client certificate ------------------------------------------------------------


async def certificate_caller(request: web.Request, door: Door, ca_ids: frozenset[str] | set[str]) -> Caller:
    """The TLS client certificate as the caller: one this gateway issued on one of
    ``ca_ids``, valid in the store (not revoked or on hold) and within its validity.
    (The listener has already verified the chain; this decides whether it counts here.)"""
    cert = peer_certificate(request.transport)
    if cert is None:
        raise FailedAuthentication("this endpoint requires a TLS client certificate")
    return await certificate_standing(door, cert, ca_ids)


async def certificate_standing(door: Door, cert: x509.Certificate, ca_ids: frozenset[str] | set[str]) -> Caller:
    """:func:`certificate_caller` for a certificate already in hand (a renewal's signer)."""
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    record = await door.certificate_by_fingerprint(fingerprint)
    if record is None or record.ca_id not in ca_ids:
        raise FailedAuthentication("the client certificate was not issued by this service's CA")
    if record.status != "valid":
        raise FailedAuthentication("the client certificate is revoked")
    now = door.clock()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise FailedAuthentication("the client certificate is expired or not yet valid")
    return Caller("certificate", cert.subject.rfc4514_string(), certificate=cert, record=record)
