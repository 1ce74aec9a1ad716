"""HTTP Negotiate (RFC 4559, SPNEGO/Kerberos) for the Kerberos CEP and CES endpoints.

Domain-joined Windows clients authenticate there with a Kerberos ticket for the gateway's
``HTTP/<host>`` SPN. The acceptor is MIT krb5 through python-gssapi, with the keytab of
the configuration's ``kerberos`` table passed in the credential store (``keytab``, and an
optional ``rcache``) so no process-wide ``KRB5_KTNAME`` is needed; the realm setup
(``krb5.conf``, ``KRB5_CONFIG``) is the host's, as deployed.

- No ``Authorization: Negotiate`` header: HTTP 401 with ``WWW-Authenticate: Negotiate``.
- Kerberos completes in one leg; the acceptor's AP-REP (mutual authentication) goes back in
  ``WWW-Authenticate: Negotiate <base64>`` on the answer (:func:`mutual`).
- NTLM (raw NTLMSSP, or SPNEGO offering NTLM first) is refused: the gateway has no way to
  verify an NTLM response without a domain controller's secure channel.
- Channel bindings: the acceptor always passes ``tls-server-end-point`` (RFC 5929) of the
  listener's certificate. A client that bound none is accepted (MIT's rule, as IIS's
  "Extended Protection: Accept"); one that bound another certificate is refused.
- A replayed authenticator is refused by the acceptor's replay cache.
- The client principal becomes a :class:`.wssecurity.Caller` (method ``kerberos``) with its
  :class:`.wssecurity.KerberosPrincipal`; what the directory says about it is not read here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway.door import Door
from gateway.errors import ConfigError

from .wssecurity import Caller, KerberosPrincipal

log = logging.getLogger(__name__)

KRB5_OID = "1.2.840.113554.1.2.2"
KRB5_OIDS = (KRB5_OID, "1.2.840.48018.1.2.2")  # the second: Microsoft's (legacy) Kerberos OID
SPNEGO_OID = "1.3.6.1.5.5.2"
NTLM_OID_DER = bytes.fromhex("060a2b06010401823702020a")  # 1.3.6.1.4.1.311.2.2.10
MAX_TOKEN_BYTES = 64 * 1024
OUT_TOKEN = "windows.negotiate.out_token"
SERVICE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*@[A-Za-z0-9.-]+$")
REALM_RE = re.compile(r"^[A-Za-z0-9.-]+$")


# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KerberosSettings:
    """A configuration's ``kerberos`` table."""

    keytab: Path
    service: str | None = None  # "HTTP@gateway.corp.example"; None: any key in the keytab
    realms: tuple[str, ...] = ()  # client realms accepted; empty: any the KDC vouches for
    rcache: str | None = None  # e.g. "file2:/var/lib/gateway/krb5.rcache2"; None: the host default


def parse_kerberos(raw: Any, where: str) -> KerberosSettings | None:
    """``kerberos = {keytab = "/etc/gateway/http.keytab", service = "HTTP@host", realms = [..]}``."""
    if raw is None:
        return None
    where = f"{where}: kerberos"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(raw) - {"keytab", "service", "realms", "rcache"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    keytab = raw.get("keytab")
    if not isinstance(keytab, str) or not keytab.startswith("/"):
        raise ConfigError(f"{where}: keytab: must be an absolute path")
    service = raw.get("service")
    if service is not None and (not isinstance(service, str) or not SERVICE_RE.match(service)):
        raise ConfigError(f"{where}: service: must be service@host, e.g. HTTP@gateway.corp.example")
    realms = raw.get("realms", [])
    if not isinstance(realms, list) or not all(isinstance(r, str) and REALM_RE.match(r) for r in realms):
        raise ConfigError(f"{where}: realms: must be a list of realm names")
    rcache = raw.get("rcache")
    if rcache is not None and (not isinstance(rcache, str) or not rcache):
        raise ConfigError(f"{where}: rcache: must be a replay cache name (e.g. file2:/path)")
    return KerberosSettings(Path(keytab), service, tuple(r.upper() for r in realms), rcache)


# --- HTTP ----------------------------------------------------------------------------------


def challenge(reason: str) -> web.HTTPUnauthorized:
    """A 401 asking for Negotiate; ``reason`` (never a secret) is the text body."""
    return web.HTTPUnauthorized(headers={"WWW-Authenticate": "Negotiate"}, text=reason + "\n")


def refused(reason: str) -> web.HTTPUnauthorized:
    log.warning("windows kerberos: refused: %s", reason)
    return challenge(f"Negotiate authentication failed: {reason}")


def mutual(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
           ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Put the acceptor's output token (the AP-REP) on the handler's answer."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        out = request.get(OUT_TOKEN)
        if isinstance(out, bytes) and out and not response.prepared:
            response.headers["WWW-Authenticate"] = "Negotiate " + base64.b64encode(out).decode()
        return response

    return handle


def request_token(request: web.Request) -> bytes | None:
    """The ``Authorization: Negotiate`` token, None when the header is absent or another scheme."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "negotiate":
        return None
    value = value.strip()
    if not value or len(value) > MAX_TOKEN_BYTES * 4 // 3 + 4:
        raise refused("the Negotiate token is empty or too long")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise refused("the Negotiate token is not base64") from None


def is_ntlm(token: bytes) -> bool:
    """Raw NTLMSSP, or a SPNEGO NegTokenInit whose preferred (first) mechanism is NTLM."""
    if token.startswith(b"NTLMSSP\x00"):
        return True
    if token[:1] != b"\x60":  # not an InitialContextToken: a NegTokenResp or raw krb5 AP-REQ
        return False
    # mechTypes is the first thing after the SPNEGO OID and the NegTokenInit headers; the
    # first OID in it is within the first ~40 bytes whatever the length encodings.
    head = token[:64]
    spnego = head.find(bytes.fromhex("06062b0601050502"))
    if spnego < 0:
        return False
    first = head.find(b"\x06", spnego + 8)
    return first >= 0 and head[first:first + len(NTLM_OID_DER)] == NTLM_OID_DER


# --- channel bindings ---------------------------------------------------------------------


def tls_server_end_point(cert: x509.Certificate) -> bytes:
    """RFC 5929 4.1: the certificate's hash with its signature's hash, SHA-256 for MD5/SHA-1."""
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return b"tls-server-end-point:" + digest.finalize()


@lru_cache(maxsize=4)
def _listener_binding(path: Path, _mtime: float) -> bytes:
    return tls_server_end_point(x509.load_pem_x509_certificates(path.read_bytes())[0])


def listener_binding(door: Door) -> bytes:
    """The application data the HTTPS listener's certificate binds (re-read when it changes)."""
    path = door.config.path(door.config.tls.certificate)
    return _listener_binding(path, path.stat().st_mtime)


# --- the acceptor --------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    principal: str
    out_token: bytes | None


class Refused(Exception):
    """The token did not authenticate; the message is for the log and the 401 body."""


def principal_of(text: str) -> KerberosPrincipal:
    """``alice@GW.TEST`` (a user) or ``WS1$@GW.TEST`` (a computer account)."""
    name, sep, realm = text.rpartition("@")
    if not sep or not name or not realm:
        raise Refused(f"the client principal {text[:200]!r} has no realm")
    kind = "computer" if name.endswith("$") and "/" not in name else "user"
    return KerberosPrincipal(name, realm, kind)


def accept(settings: KerberosSettings, token: bytes, binding: bytes) -> Accepted:
    """One acceptor step (blocking: the keytab and replay cache are files)."""
    try:
        import gssapi
        import gssapi.raw
        from gssapi.raw.misc import GSSError
    except ImportError:  # pragma: no cover - depends on the deployment
        raise ConfigError("Kerberos needs python-gssapi: install the gateway with its kerberos extra") from None
    store: dict[bytes | str, bytes | str] = {"keytab": f"FILE:{settings.keytab}"}
    if settings.rcache:
        store["rcache"] = settings.rcache
    name = gssapi.Name(settings.service, gssapi.NameType.hostbased_service) if settings.service else None
    try:
        creds = gssapi.Credentials(name=name, usage="accept", store=store)
    except GSSError as exc:
        log.error("windows kerberos: cannot use keytab %s: %s", settings.keytab, exc.gen_message())
        raise ConfigError(f"the Kerberos keytab {str(settings.keytab)!r} cannot be used") from None
    bindings = gssapi.raw.ChannelBindings(application_data=binding)
    ctx = gssapi.SecurityContext(creds=creds, usage="accept", channel_bindings=bindings)
    try:
        out = ctx.step(token)
        # python-gssapi keeps a SPNEGO reject's error (its output is the reject token) and
        # raises it on the next attribute read: so these are inside the try too
        if not ctx.complete:
            raise Refused("the exchange did not complete in one leg (only Kerberos is accepted)")
        mech = ctx.mech.dotted_form if ctx.mech is not None else ""
        if mech not in KRB5_OIDS + (SPNEGO_OID,):
            raise Refused(f"mechanism {mech} is not Kerberos")
        initiator = str(ctx.initiator_name)
    except GSSError as exc:
        raise Refused(exc.gen_message().replace("\n", " ")[:300]) from None
    return Accepted(initiator, out)


async def kerberos_caller(request: web.Request, door: Door, settings: KerberosSettings) -> Caller:
    """Authenticate ``request`` by Negotiate; 401 (:func:`challenge`) when it does not."""
    token = request_token(request)
    if token is None:
        raise challenge("this endpoint requires Negotiate (Kerberos) authentication")
    if is_ntlm(token):
        raise refused("an NTLM token (NTLM is not accepted: use Kerberos)")
    try:
        accepted = await asyncio.to_thread(accept, settings, token, listener_binding(door))
        principal = principal_of(accepted.principal)
    except Refused as exc:
        raise refused(str(exc)) from None
    if settings.realms and principal.realm.upper() not in settings.realms:
        raise refused(f"realm {principal.realm!r} is not accepted here")
    request[OUT_TOKEN] = accepted.out_token
    log.info("windows kerberos: authenticated %s (%s)", principal.text, principal.kind)
    return Caller("kerberos", principal.text, principal=principal)
