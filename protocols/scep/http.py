"""SCEP over HTTP: the operation endpoint, the NDES paths, mscep_admin and the Jamf webhook.

Transport quirks are absorbed here, before the protocol sees a byte:

- ``message`` on GET is read from the raw query string: unescaped ``+`` and ``/``
  (Cisco IOS), ``+`` turned into spaces by proxies, URL-safe alphabet, line breaks
  every 64 characters, missing padding;
- POST bodies are DER as RFC 8894 says, or base64 text, or a form with ``message=``;
  an empty POST is answered with a clear 400, never a CertRep.

Errors that cannot be answered with a CertRep (unknown configuration, undecodable
message) are short ``text/plain`` HTTP errors, which is what SCEP clients log.
"""

from __future__ import annotations

import base64
import datetime as dt
import binascii
import json
import logging
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from gateway.door import LockedOut
from gateway.errors import (
    HTTP_STATUS,
    BadRequest,
    ConfigError,
    Conflict,
    ErrorKind,
    GatewayError,
    Unauthorized,
)

from .admins import authenticate_admin
from .challenge import WEBHOOK, issue_dynamic_challenge
from .service import ScepService, service_of
from .settings import WEBHOOK_FIELDS, ScepSettings
from .types import CONTENT_TYPE_PKI_MESSAGE, MalformedMessage

log = logging.getLogger("gateway.scep")

CONFIG = "{config:[a-z0-9_-]{2,18}}"
OPERATION_PATHS = (
    f"/scep/{CONFIG}", f"/scep/{CONFIG}/", f"/scep/{CONFIG}/pkiclient.exe",
    f"/scep/{CONFIG}/cgi-bin/pkiclient.exe",
)
# IIS matches paths case-insensitively; "/CertSrv/..." is how Microsoft's documentation and
# Samba's group-policy autoenrollment (before CVE-2026-3012) spell the NDES path.
NDES_OPERATION_PATHS = tuple(
    f"/{certsrv}/mscep/mscep.dll{tail}" for certsrv in ("certsrv", "CertSrv") for tail in ("", "/", "/pkiclient.exe")
) + ("/cgi-bin/pkiclient.exe",)
ADMIN_PATHS = (f"/scep/{CONFIG}/mscep_admin", f"/scep/{CONFIG}/mscep_admin/")
NDES_ADMIN_PATHS = (
    "/certsrv/mscep_admin", "/certsrv/mscep_admin/", "/certsrv/mscep_admin/default.aspx",
    "/certsrv/mscep_admin/mscep.dll",
)
WEBHOOK_PATHS = (f"/scep/{CONFIG}/webhook/jamf",)
MAX_MESSAGE_CHARS = 1 << 20
_B64_JUNK = re.compile(r"[\s]")
REALM = 'Basic realm="mscep_admin", charset="UTF-8"'
RETRY_AFTER_SECONDS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def text_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain", headers=headers)


def _error_response(exc: Exception) -> web.Response:
    if isinstance(exc, MalformedMessage):
        return text_error(400, f"malformed pkiMessage: {exc}")
    if isinstance(exc, GatewayError):
        status = HTTP_STATUS[exc.kind]
        if isinstance(exc, ConfigError):
            status = 503  # a broken configuration is the operator's problem, not the client's
        headers = {"WWW-Authenticate": REALM} if exc.kind is ErrorKind.UNAUTHORIZED else None
        if status == 503:  # try again later: clients retry an HTTP error, a FAILURE is final
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return text_error(status, exc.detail, headers)
    raise exc


def _count_error(request: web.Request, reason: str) -> None:
    """An HTTP-level error answer (no CertRep) in ``gateway_protocol_errors_total``."""
    service = service_of(request)
    config_id = request.match_info.get("config")
    service.door.count_error(config_id if config_id and service.knows(config_id) else None, reason)


def guarded(handler: Handler) -> Handler:
    """Map failures to plain-text HTTP errors; unexpected ones are logged, never shown."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except (GatewayError, MalformedMessage) as exc:
            _count_error(request, "malformedMessage" if isinstance(exc, MalformedMessage) else exc.kind.value)
            return _error_response(exc)
        except Exception:
            log.exception("SCEP handler failed on %s %s", request.method, request.path)
            _count_error(request, ErrorKind.INTERNAL.value)
            return text_error(500, "internal server error")

    return wrapper


def raw_query(request: web.Request) -> dict[str, str]:
    """Query parameters without form decoding of ``+`` (base64 needs it literally)."""
    params: dict[str, str] = {}
    for part in request.rel_url.raw_query_string.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = urllib.parse.unquote_plus(name).strip()
        params.setdefault(name.lower(), value)
    return params


def decode_message(text: str) -> bytes:
    """base64 as real clients send it (see the module docstring)."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise BadRequest("the message parameter is too long")
    value = urllib.parse.unquote(text)
    value = value.replace(" ", "+")  # a '+' some hop decoded as a space
    value = _B64_JUNK.sub("", value).replace("-", "+").replace("_", "/")
    value = value.rstrip("=")
    value += "=" * (-len(value) % 4)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the message parameter is not base64") from None
    if not data:
        raise BadRequest("the message parameter is empty")
    return data


async def pki_message_bytes(request: web.Request, query: dict[str, str]) -> bytes:
    if request.method == "POST":
        body = await request.read()
        if body.startswith(b"\x30"):
            return body
        stripped = body.strip()
        if stripped.startswith(b"message="):
            return decode_message(stripped[len(b"message="):].decode("ascii", "replace"))
        if stripped:
            return decode_message(stripped.decode("ascii", "replace"))
        if query.get("message"):
            return decode_message(query["message"])
        raise BadRequest("empty PKIOperation POST body: send the DER pkiMessage as the request body")
    if not query.get("message"):
        raise BadRequest("PKIOperation needs a message parameter (base64 pkiMessage) or a POST body")
    return decode_message(query["message"])


def service(request: web.Request) -> ScepService:
    return service_of(request)


async def config_id_of(request: web.Request, svc: ScepService) -> str:
    config_id = request.match_info.get("config")
    return config_id if config_id is not None else await svc.ndes_config_id()


@guarded
async def operation(request: web.Request) -> web.StreamResponse:
    """GET/POST ``?operation=...`` (names compared case-insensitively, as NDES does)."""
    svc = service(request)
    config_id = await config_id_of(request, svc)
    query = raw_query(request)
    op = urllib.parse.unquote_plus(query.get("operation", "")).strip()
    name = op.lower()
    if name == "pkioperation":
        reply = await svc.pki_operation(config_id, await pki_message_bytes(request, query))
        return web.Response(body=reply, content_type=CONTENT_TYPE_PKI_MESSAGE)
    if request.method == "POST":
        await request.read()
    if name in ("getcacert", "getcachain"):
        content_type, body = await svc.ca_certificates(config_id)
        return web.Response(body=body, content_type=content_type)
    if name == "getcacaps":
        return web.Response(text=await svc.ca_caps(config_id), content_type="text/plain")
    if name == "getnextcacert":
        content_type, body = await svc.next_ca_certificates(config_id)
        return web.Response(body=body, content_type=content_type)
    if not op:
        raise BadRequest("missing operation parameter (GetCACert, GetCACaps, GetNextCACert, PKIOperation)")
    raise BadRequest(f"unknown SCEP operation {op[:64]!r}")


# --- challenge issuance over HTTP: NDES mscep_admin and the Jamf webhook -----------------


ADMIN_REFUSED = "valid challenge-admin credentials are required (HTTP Basic)"


async def _authenticated_admin(request: web.Request, svc: ScepService, config_id: str) -> tuple[str, ScepSettings]:
    """The challenge admin of the request's Basic credentials (see :mod:`.admins`).
    Every refusal, a lockout included, is the same 401 with the same challenge."""
    rec = await svc.door.configuration(config_id)
    settings = ScepSettings.of(rec)
    if not request.secure and not settings.admin_over_http:
        raise web.HTTPForbidden(
            text="challenge passwords are only handed out over HTTPS (settings.admin_over_http)\n",
            content_type="text/plain",
        )
    try:
        admin = await authenticate_admin(svc.door.credentials, config_id, request.headers.get(hdrs.AUTHORIZATION))
    except Unauthorized as exc:
        await svc.door.record_event(
            "scep_challenge", "failure", protocol_config=config_id,
            detail="locked out" if isinstance(exc, LockedOut) else "authentication failed", source=request.path,
        )
        raise Unauthorized(ADMIN_REFUSED) from None
    return admin.username or "", settings


def ndes_page(body_lines: list[str]) -> bytes:
    """An NDES-shaped admin page, UTF-16LE with a BOM as NDES serves it."""
    html = (
        '<HTML><Head><Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-16">'
        "<Title>Network Device Enrollment Service</Title></Head>\r\n"
        '<Body BgColor=#FFFFFF><Font ID=locPageFont Face="Arial">\r\n'
        "<P ID=locPageTitle> <Font Size=+1><B>Network Device Enrollment Service</B></Font>\r\n"
        "<P> Network Device Enrollment Service allows you to obtain certificates for routers or "
        "other network devices using the Simple Certificate Enrollment Protocol (SCEP).\r\n"
        + "".join(f"<P> {line}\r\n" for line in body_lines)
        + "<P> For more information see the gateway's SCEP documentation.\r\n"
        "</Font></Body></HTML>\r\n"
    )
    return b"\xff\xfe" + html.encode("utf-16-le")


def expiry_text(ttl: dt.timedelta) -> str:
    """The page's lifetime in NDES words ("60 minutes"), in seconds below one minute (a
    45-second lifetime is not "0 minutes"), with the seconds of a part minute kept."""
    minutes, seconds = divmod(max(int(ttl.total_seconds()), 0), 60)
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in ((minutes, "minute"), (seconds, "second")) if n]
    return " ".join(parts) or "0 seconds"


@guarded
async def mscep_admin(request: web.Request) -> web.StreamResponse:
    svc = service(request)
    config_id = await config_id_of(request, svc)
    user, settings = await _authenticated_admin(request, svc, config_id)
    ctx = await svc.context(config_id)
    thumbprint = ctx.ca_certificate.fingerprint(hashes.SHA256()).hex().upper()
    ttl = settings.challenge_lifetime(None)
    try:
        issued = await issue_dynamic_challenge(
            svc.repo, config_id, ttl=ttl, limit=settings.dynamic_challenge_limit,
            source="ndes", issued_by=user, now=svc.clock(),
        )
    except Conflict:
        lines = [("The password cache is full. To obtain a new challenge password, wait until one of "
                  "the cached passwords has been used or has expired.")]
    else:
        lines = [
            f"The thumbprint (hash value) for the CA certificate is: <B> {thumbprint} </B>",
            f"The enrollment challenge password is: <B> {issued.challenge} </B>",
            f"This password can be used only once and will expire within {expiry_text(ttl)}.",
            "Each enrollment requires a new challenge password.",
        ]
        await svc.door.record_event(
            "scep_challenge", "success", protocol_config=config_id, source="ndes", actor=user,
        )
    return web.Response(
        body=ndes_page(lines), headers={hdrs.CONTENT_TYPE: "text/html; charset=utf-16", "Cache-Control": "no-store"},
    )


def _jamf_event(body: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """(webhookEvent, event fields) from a Jamf Pro webhook, JSON or XML."""
    text = body.strip()
    if not text:
        raise BadRequest("empty webhook body")
    if text.startswith(b"<"):
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            raise BadRequest("the webhook body is not well-formed XML") from None
        name = (root.findtext("webhook/webhookEvent") or "").strip()
        node = root.find("event")
        fields = {child.tag: (child.text or "").strip() for child in (list(node) if node is not None else [])}
        return name, dict(fields)
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the webhook body is neither JSON nor XML") from None
    if not isinstance(doc, dict):
        raise BadRequest("the webhook body must be a JSON object")
    webhook: dict[str, Any] = doc["webhook"] if isinstance(doc.get("webhook"), dict) else {}
    event: dict[str, Any] = doc["event"] if isinstance(doc.get("event"), dict) else {}
    return str(webhook.get("webhookEvent", "")), event


@guarded
async def jamf_webhook(request: web.Request) -> web.StreamResponse:
    """Jamf Pro's ``SCEPChallenge`` webhook: answer with a one-time challenge as the body."""
    svc = service(request)
    config_id = await config_id_of(request, svc)
    user, settings = await _authenticated_admin(request, svc, config_id)
    name, event = _jamf_event(await request.read(), request.content_type)
    if name.lower() != "scepchallenge":
        raise BadRequest(f"expected a SCEPChallenge webhook event, got {name[:64]!r}")
    attributes = {
        key: str(event[key])[:255] for key in (*WEBHOOK_FIELDS, "targetType", "jssID")
        if isinstance(event.get(key), (str, int)) and str(event.get(key)).strip()
    }
    bound = None
    if settings.webhook_bind_cn:
        value = attributes.get(settings.webhook_bind_cn)
        if not value:
            raise BadRequest(f"the SCEPChallenge event carries no {settings.webhook_bind_cn!r} to bind the challenge to")
        bound = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)]).rfc4514_string()
    issued = await issue_dynamic_challenge(
        svc.repo, config_id, ttl=settings.challenge_lifetime(None), limit=settings.dynamic_challenge_limit,
        source=WEBHOOK, issued_by=user, bound_subject=bound, attributes=attributes, now=svc.clock(),
    )
    await svc.door.record_event(
        "scep_challenge", "success", protocol_config=config_id, source="webhook", actor=user,
        bound=bound is not None,
    )
    return web.Response(text=issued.challenge, content_type="text/plain", headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    # No implicit HEAD: a HEAD would run the operation (issue a certificate, hand out a
    # challenge) and throw the answer away.
    for path in OPERATION_PATHS + NDES_OPERATION_PATHS:
        app.router.add_get(path, operation, allow_head=False)
        app.router.add_post(path, operation)
    for path in ADMIN_PATHS + NDES_ADMIN_PATHS:
        app.router.add_get(path, mscep_admin, allow_head=False)
    for path in WEBHOOK_PATHS:
        app.router.add_post(path, jamf_webhook)
