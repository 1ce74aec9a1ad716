"""The EST operations under ``/.well-known/est/`` and ``/.well-known/est/<label>/``.

Each handler is a short pipeline: resolve the label, authenticate the client,
read the CSR, apply the EST checks, and ask the core, through EST's door
(:class:`gateway.door.Door`), to enroll or generate. Every failure is a typed error
mapped in one place (:mod:`.errors`); bad input never changes anything.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.door import Door, IssuedCertificate, PendingRequest, ProtocolConfigRecord
from gateway.errors import BadRequest, ErrorKind, Forbidden, GatewayError, Unauthorized
from gateway.profiles.model import Profile

from . import csr as csrs
from . import serverkeygen, wire
from .auth import (
    CertificateStanding,
    Client,
    PresentedCertificate,
    authenticate,
    check_password,
    presented_certificate,
    refuse_bad_certificate,
)
from .binding import check_linking
from .errors import NotSupported, empty_response, error_response, text_response
from .pending import HeldRequest, PendingRequests, request_key
from .policy import LabelMisconfigured, LabelPolicy
from .recording import record_exchange
from .runtime import RUNTIME, install

log = logging.getLogger("gateway.est")

PROTOCOL = "est"
PREFIX = "/.well-known/est"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Context:
    """What a request works with: EST's door, its label's configuration and policy."""

    door: Door
    record: ProtocolConfigRecord
    policy: LabelPolicy
    pending: PendingRequests

    def profile(self) -> Profile:
        """The label's default profile (a label naming a profile that is gone is the
        operator's to fix: 503)."""
        found = self.door.profile(self.policy.profile)
        if found is None:
            raise LabelMisconfigured(f"EST label {self.policy.label!r} uses an unknown profile "
                                     f"{self.policy.profile!r}")
        return found


_CONTEXT = web.RequestKey("est_context", Context)


# --- plumbing -------------------------------------------------------------------------

async def context(request: web.Request) -> Context:
    """The request's label, resolved once."""
    ctx = request.get(_CONTEXT)
    if ctx is None:
        runtime = request.config_dict[RUNTIME]
        label = await runtime.labels.resolve(request.match_info.get("label"))
        ctx = request[_CONTEXT] = Context(runtime.door, label.record, label.policy, runtime.pending)
    return ctx


@web.middleware
async def est_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the operation and map failures to EST's wire errors (one place)."""
    try:
        response = await handler(request)
    except GatewayError as exc:
        ctx = request.get(_CONTEXT)
        label = ctx.policy.label if ctx else request.match_info.get("label")
        response = error_response(exc, label, ctx.policy.accepts_basic if ctx else False)
        if exc.kind is ErrorKind.INTERNAL:
            log.error("EST %s failed: %s", request.path, exc.detail)
        _count_error(request, "not_supported" if isinstance(exc, NotSupported) else exc.kind.value)
    except web.HTTPException:
        raise
    except Exception:  # a bug: logged with its traceback, the client learns nothing
        log.exception("unhandled error on EST %s %s", request.method, request.path)
        response = text_response(500, "internal server error")
        _count_error(request, ErrorKind.INTERNAL.value)
    await record_exchange(request, response)
    return response


def _count_error(request: web.Request, reason: str) -> None:
    """``gateway_protocol_errors_total``, labelled with the label only once it resolved."""
    ctx = request.get(_CONTEXT)
    request.config_dict[RUNTIME].door.count_error(ctx.record.id if ctx else None, reason)


def _certs_response(der: bytes) -> web.Response:
    return web.Response(body=wire.encode_base64(der), headers={
        "Content-Type": wire.CERTS_ONLY, "Content-Transfer-Encoding": "base64",
    })


async def _read_request(request: web.Request) -> csrs.Request:
    if wire.media_type(request.headers.get("Content-Type")) not in wire.ACCEPTED_REQUEST_TYPES:
        raise _Unsupported(f"expected a base64 application/pkcs10 body, got {request.headers['Content-Type']!r}")
    body = await request.read()
    return csrs.parse(wire.decode_body(body, "PKCS#10"))


class _Unsupported(BadRequest):
    status = 415


def _accepted(policy: LabelPolicy) -> web.Response:
    """Held for operator approval: the client sends the same request again after Retry-After."""
    return empty_response(202, {"Retry-After": str(policy.retry_after)})


# --- cacerts / csrattrs / fullcmc -------------------------------------------------------

async def cacerts(request: web.Request) -> web.StreamResponse:
    """The label's CA certificate and its issuers (RFC 7030 4.1); no authentication."""
    ctx = await context(request)
    chain = await ctx.door.chain(ctx.policy.ca_id)
    return _certs_response(wire.certs_only(list(chain)))


async def csrattrs(request: web.Request) -> web.StreamResponse:
    """The label's CSR attributes (RFC 7030 4.5, RFC 9908); 204 when it has none."""
    ctx = await context(request)
    if ctx.policy.csrattrs_auth:
        await _authenticate(ctx, request, await presented_certificate(request, ctx.door, ctx.policy))
    if ctx.policy.csrattrs is None:
        return web.Response(status=204)
    return web.Response(body=wire.encode_base64(ctx.policy.csrattrs), headers={
        "Content-Type": wire.CSRATTRS, "Content-Transfer-Encoding": "base64",
    })


async def fullcmc(request: web.Request) -> web.StreamResponse:
    raise NotSupported("Full CMC (RFC 7030 section 4.3) is not implemented here; "
                       "use simpleenroll, simplereenroll or serverkeygen")


# --- authentication ---------------------------------------------------------------------

async def _check_password(ctx: Context, header: str) -> str:
    try:
        return await check_password(ctx.door, ctx.policy, header)
    except Unauthorized as exc:
        await ctx.door.record_event(
            "auth", "failure", protocol_config=ctx.policy.label, error=exc.kind.value, detail=exc.detail,
        )
        raise


async def _authenticate(ctx: Context, request: web.Request, presented: PresentedCertificate | None) -> Client:
    """The label's auth rule; wrong credentials (not missing ones) are audited."""
    try:
        return await authenticate(request, ctx.door, ctx.policy, presented)
    except Unauthorized as exc:
        if request.headers.get("Authorization") is not None:
            await ctx.door.record_event(
                "auth", "failure", protocol_config=ctx.policy.label, error=exc.kind.value, detail=exc.detail,
            )
        raise
    except Forbidden as exc:
        if presented is not None:
            await ctx.door.record_event(
                "auth", "failure", protocol_config=ctx.policy.label, error=exc.kind.value, detail=exc.detail,
                actor=f"est-cert:{presented.subject}",
            )
        raise


# --- enrollment -------------------------------------------------------------------------

async def _audit_refusal(ctx: Context, event: str, exc: GatewayError, actor: str | None) -> None:
    await ctx.door.record_event(
        event, "failure", protocol_config=ctx.policy.label, ca_id=ctx.policy.ca_id,
        error=exc.kind.value, detail=exc.detail, actor=actor,
    )


async def _answer_held(ctx: Context, held: HeldRequest) -> web.Response:
    state = await ctx.door.poll(held.request_id)
    if isinstance(state, IssuedCertificate):
        return _certs_response(wire.certs_only([state.certificate]))
    if state.status == "rejected":
        raise Forbidden(f"the request was rejected by an operator: {state.reason or 'no reason given'}")
    return _accepted(ctx.policy)


async def _enroll(ctx: Context, client: Client, request: csrs.Request, *, entity: str,
                  event_type: str) -> web.Response:
    policy = ctx.policy
    may_hold = policy.manual_approval or await ctx.door.ca_holds_requests(policy.ca_id)
    held_key = request_key(request.csr) if may_hold else None
    if held_key is not None:
        held = await ctx.pending.find(policy.label, client.key, held_key)
        if held is not None:
            return await _answer_held(ctx, held)
    result = await ctx.door.enroll(
        policy.label, request.csr, entity=entity, event_type=event_type, actor=client.actor,
        request_id=uuid.uuid4().hex if held_key is not None else None,
        entity_attributes={"est_label": policy.label, "enrolled_with": client.method},
        record=ctx.record,
    )
    if isinstance(result, PendingRequest):
        assert held_key is not None
        if not await ctx.pending.remember(HeldRequest(result.request_id, policy.label, client.key, held_key)):
            log.info("concurrent identical EST request on %s; the first one is remembered", policy.label)
        return _accepted(policy)
    return _certs_response(wire.certs_only([result.certificate]))


async def simpleenroll(request: web.Request) -> web.StreamResponse:
    """Enroll a new certificate (RFC 7030 4.2.1)."""
    ctx = await context(request)
    client = await _authenticate(ctx, request, await presented_certificate(request, ctx.door, ctx.policy))
    parsed = await _read_request(request)
    try:
        check_linking(ctx.policy, parsed, request)
        csrs.refuse_weak_signature(parsed.csr)
        entity = csrs.entity_name(parsed.csr)
    except GatewayError as exc:
        await _audit_refusal(ctx, "issue", exc, client.actor)
        raise
    return await _enroll(ctx, client, parsed, entity=entity, event_type="issue")


async def simplereenroll(request: web.Request) -> web.StreamResponse:
    """Renew or rekey with the certificate being replaced as the TLS client certificate (4.2.2)."""
    ctx = await context(request)
    policy = ctx.policy
    presented = await presented_certificate(request, ctx.door, policy)
    try:
        if presented is None:
            raise Forbidden("simplereenroll requires the certificate being renewed as the TLS client certificate")
        refuse_bad_certificate(presented)
        if presented.record is None:
            raise Forbidden("the TLS client certificate was not issued by this gateway; use simpleenroll")
        if presented.standing is not CertificateStanding.ISSUED:
            raise Forbidden("the TLS client certificate was not issued by this label's CA")
    except GatewayError as exc:
        await _audit_refusal(ctx, "renew", exc, presented.subject if presented else None)
        raise
    username = None
    if policy.auth == "both":  # the one mode where a password is asked on top of the certificate
        header = request.headers.get("Authorization")
        if header is None:
            raise Unauthorized("HTTP Basic credentials are required")
        username = await _check_password(ctx, header)
    client = Client(username=username, certificate=presented)
    parsed = await _read_request(request)
    record = presented.record
    try:
        check_linking(policy, parsed, request)
        csrs.refuse_weak_signature(parsed.csr)
        profile = ctx.door.profile(record.profile) or ctx.profile()
        csrs.check_same_identity(parsed, presented.certificate, cn_as_dns=profile.san.cn_as_dns)
    except GatewayError as exc:
        await _audit_refusal(ctx, "renew", exc, client.actor)
        raise
    entity = None
    if record.entity_id is not None:
        existing = await ctx.door.entity(record.entity_id)
        if existing is not None and existing.protocol_config == policy.label:
            entity = existing.name
    return await _enroll(ctx, client, parsed, entity=entity or csrs.entity_name(parsed.csr), event_type="renew")


def _tls_signer(door: Door) -> tuple[x509.Certificate, PrivateKeyTypes, list[x509.Certificate]]:
    """The EST server's own certificate and key (the HTTPS listener's), to sign key packages."""
    config = door.config
    certs = x509.load_pem_x509_certificates(config.path(config.tls.certificate).read_bytes())
    key = serialization.load_pem_private_key(config.path(config.tls.key).read_bytes(), password=None)
    return certs[0], key, certs[1:]


async def serverkeygen_handler(request: web.Request) -> web.StreamResponse:
    """Generate the key pair here and return it with its certificate (RFC 7030 4.4)."""
    ctx = await context(request)
    policy = ctx.policy
    presented = await presented_certificate(request, ctx.door, policy)
    client = await _authenticate(ctx, request, presented)
    if not policy.serverkeygen:
        raise NotSupported(f"server-side key generation is not offered on label {policy.label!r}")
    parsed = await _read_request(request)
    try:
        if policy.manual_approval:
            raise Forbidden("server-side key generation is not available on a label that holds requests "
                            "for operator approval")
        check_linking(policy, parsed, request)
        encryption = serverkeygen.requested_encryption(parsed)
        recipient = None
        if encryption is not None:
            # The key of the certificate on this connection (accepted or not by the label's auth rule).
            recipient = serverkeygen.recipient_for(encryption, presented.certificate if presented else None)
        entity = csrs.entity_name(parsed.csr)
        algorithm = serverkeygen.key_algorithm(parsed, ctx.profile(), policy.serverkeygen_algorithm)
    except GatewayError as exc:
        await _audit_refusal(ctx, "keygen", exc, client.actor)
        raise
    result = await ctx.door.keygen(
        policy.label, entity=entity, key_algorithm=algorithm, subject=parsed.csr.subject,
        sans=tuple(csrs.subject_alt_names(parsed.csr)), actor=client.actor,
    )
    if encryption is not None and recipient is not None:
        signer, signer_key, signer_chain = _tls_signer(ctx.door)
        key_part = wire.Part(wire.SERVER_GENERATED_KEY, serverkeygen.encrypted_key(
            result.private_key, encryption, recipient, signer, signer_key, signer_chain))
    else:
        key_part = wire.Part(wire.PKCS8, serverkeygen.pkcs8(result.private_key))
    cert_part = wire.Part(wire.CERTS_ONLY, wire.certs_only([result.issued.certificate]))
    content_type, body = wire.multipart([key_part, cert_part])
    return web.Response(body=body, headers={"Content-Type": content_type})


OPERATIONS: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "cacerts", cacerts),
    ("POST", "simpleenroll", simpleenroll),
    ("POST", "simplereenroll", simplereenroll),
    ("POST", "serverkeygen", serverkeygen_handler),
    ("GET", "csrattrs", csrattrs),
    ("POST", "fullcmc", fullcmc),
)


def create_app(door: Door) -> web.Application:
    """The EST sub-app, mounted at ``/.well-known/est`` on the HTTPS listener."""
    app = web.Application(middlewares=[est_errors])
    install(app, door)
    for method, name, handler in OPERATIONS:
        app.router.add_route(method, f"/{name}", handler, name=f"est-{name}")
        app.router.add_route(method, f"/{{label}}/{name}", handler, name=f"est-label-{name}")
    return app
