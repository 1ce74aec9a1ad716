"""Orders (RFC 8555 sections 7.4, 7.4.2): newOrder, polling, finalize, certificate download.

newOrder checks everything before writing anything: identifiers and policy (the
configuration's and the account's EAB restriction), profile, validity, ARI
``replaces``, rate limits. Finalize checks the CSR against the order exactly and
the policy again, then claims the order (``ready`` -> ``processing``,
compare-and-set) and asks the core to enroll. A CSR the core refuses puts the
order back to ``ready``, and so does a store or CA that cannot serve now (503 with
``Retry-After``: the client finalizes again); a request held for manual approval leaves it
``processing`` until the operator decides. With nonces in the store, finalize's
nonce is recorded in the issuance transaction itself: a replay that loses the
race cannot leave the winner answering ``badNonce`` for a certificate it got.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import secrets

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.ca.builder import check_proof_of_possession, load_csr
from gateway.door import IssuedCertificate, IssueOverrides, PendingRequest
from gateway.errors import Conflict, ErrorKind, GatewayError
from gateway.keys import check_key_strength
from gateway.profiles.model import add_period

from .. import ari, problems
from ..identifiers import DNS, IP, Identifier, check_identifiers, parse_identifiers
from ..nonces import b64url_decode
from ..records import Authorization, Order
from ..store import NonceReused
from .accounts import entity_name
from .authorizations import account_policies, new_authorization
from .context import Signed, acme_json, nonce_settled, parse_rfc3339, read_signed, runtime
from .runtime import AcmeRuntime
from .views import order_view

log = logging.getLogger("gateway.acme")

PEM_CHAIN = "application/pem-certificate-chain"


# --- newOrder --------------------------------------------------------------------------
async def new_order(request: web.Request) -> web.Response:
    signed = await read_signed(request, defer_nonce=True)
    async with nonce_settled(request, signed):
        return await _new_order(request, signed)


async def _new_order(request: web.Request, signed: Signed) -> web.Response:
    rt = runtime(request)
    acme, account = signed.acme, signed.require_account()
    payload = signed.payload()
    identifiers = parse_identifiers(payload.get("identifiers"), acme.settings.max_identifiers)
    check_identifiers(identifiers, *account_policies(acme, account))
    profile = _profile(signed, payload.get("profile"))
    now = rt.now()
    not_before, not_after = _validity(rt, profile, payload, now)
    replaces, replaces_serial = await _replaces(rt, signed, payload.get("replaces"), identifiers)

    reusable: dict[tuple[str, str, bool], Authorization] = {}
    if acme.settings.authz_reuse:
        wanted = {(i.type, i.base, i.wildcard) for i in identifiers}
        horizon = now + min(acme.settings.authz_lifetime, acme.settings.valid_authz_lifetime) / 2
        for a in await rt.store.reusable_authzs(acme.id, account.id, identifiers, horizon, include_pending=True):
            key = (a.identifier.type, a.identifier.value, a.wildcard)
            if key in wanted and (key not in reusable or _better(a, reusable[key])):
                reusable[key] = a
    authzs: list[Authorization] = []
    created: list[Authorization] = []
    for ident in identifiers:
        found = reusable.get((ident.type, ident.base, ident.wildcard))
        if found is None:
            found = new_authorization(acme, account, ident, now)
            created.append(found)
        authzs.append(found)
    expires = min([now + acme.settings.order_lifetime, *(a.expires for a in authzs)])
    order = Order(
        id=secrets.token_urlsafe(16), config_id=acme.id, account_id=account.id, expires=expires,
        identifiers=identifiers, authz_ids=[a.id for a in authzs], profile=profile,
        status="ready" if all(a.status == "valid" for a in authzs) else "pending",
        not_before=not_before, not_after=not_after, replaces=replaces, created_at=now, updated_at=now,
    )
    limits = []
    if (lim := acme.settings.rate_limits.get("orders_per_account")) is not None:
        limits.append((f"{acme.id}|orders|{account.id}", lim, "new orders of this account"))
    if (lim := acme.settings.rate_limits.get("orders_per_config")) is not None:
        limits.append((f"{acme.id}|orders", lim, "new orders of this directory"))
    await rt.store.create_order(order, created, limits=limits, replaces_serial=replaces_serial, now=now,
                                nonce=signed.nonce)
    return acme_json(order_view(order, signed.urls, now), 201, location=signed.urls.order(order.id))


def _better(a: Authorization, b: Authorization) -> bool:
    """Prefer a valid authorization, then the one that lives longer."""
    return (a.status == "valid", a.expires) > (b.status == "valid", b.expires)


def _profile(signed: Signed, requested: object) -> str:
    record = signed.acme.record
    if requested is None or requested == "":
        return record.default_profile
    if not isinstance(requested, str):
        raise problems.malformed("profile must be a string")
    if requested not in record.profiles:
        raise problems.invalid_profile(
            f"profile {requested!r} is not offered here (offered: {', '.join(record.profiles)})"
        )
    return requested


def _validity(rt: AcmeRuntime, profile: str, payload: dict[str, object],
              now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    nb = parse_rfc3339(payload["notBefore"], "notBefore") if payload.get("notBefore") is not None else None
    na = parse_rfc3339(payload["notAfter"], "notAfter") if payload.get("notAfter") is not None else None
    spec = rt.door.profile(profile)
    if nb is not None and nb < now - dt.timedelta(days=1):
        raise problems.malformed("notBefore may lie at most one day in the past")
    if na is not None:
        if na <= (nb or now):
            raise problems.malformed("notAfter must be later than notBefore and now")
        if spec is not None and na > add_period(nb or now, spec.max_validity):
            raise problems.malformed(f"the requested validity exceeds the maximum of profile {profile}")
    return nb, na


async def _replaces(rt: AcmeRuntime, signed: Signed, value: object,
                    identifiers: list[Identifier]) -> tuple[str | None, str | None]:
    """RFC 9773 ``replaces``: a certificate of this account sharing an identifier with the order."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        raise problems.malformed("replaces must be a certificate identifier string")
    cert_id = ari.CertID.parse(value)
    rec = await rt.door.find_certificate(cert_id.serial_hex)
    account = signed.require_account()
    if rec is None or rec.ca_id != signed.acme.record.ca_id:
        raise problems.malformed("replaces names no certificate issued here")
    if rec.entity_id != account.entity_id:
        raise problems.unauthorized("the certificate to replace was not issued to this account")
    names = {_san_identifier(san) for san in rec.sans}
    if not names & {i.value for i in identifiers}:
        raise problems.malformed("the replacement order shares no identifier with the certificate it replaces")
    return value, rec.serial


def _san_identifier(san: str) -> str:
    kind, _, value = san.partition(":")
    if kind == "IP":
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value
    return value.lower()


# --- reading orders --------------------------------------------------------------------
async def load_order(rt: AcmeRuntime, signed: Signed, order_id: str, *,
                     promote: bool = True) -> tuple[Order, list[Authorization]]:
    pair = await rt.store.get_order_with_authzs(signed.acme.id, order_id)
    if pair is None:
        raise problems.not_found("no such order")
    order, authzs = pair
    if order.account_id != signed.require_account().id:
        raise problems.unauthorized("this order belongs to another account")
    return await refresh(rt, signed, order, authzs, promote=promote), authzs


async def refresh(rt: AcmeRuntime, signed: Signed, order: Order, authzs: list[Authorization], *,
                  promote: bool = True) -> Order:
    """Move the order along as its authorizations (or a held request) have moved.

    ``promote=False`` (finalize): a pending order whose authorizations are all valid
    is marked ready in memory only; finalize's own compare-and-set takes it from
    pending or ready to processing in one write. Writes here carry the request's
    deferred nonce, if any.
    """
    now = rt.now()
    nonce = signed.nonce
    if order.status == "pending" and order.expires > now:
        states = [a.effective_status(now) for a in authzs]
        if len(authzs) != len(order.authz_ids) or any(s in ("invalid", "deactivated", "expired", "revoked") for s in states):
            error = _authz_error(authzs, now)
            if await rt.store.update_order(order.id, ("pending",), status="invalid", error=error, nonce=nonce):
                order.status, order.error = "invalid", error
                await rt.store.release_replacement(order.id)
        elif all(s == "valid" for s in states):
            if not promote:
                order.status = "ready"
            elif await rt.store.update_order(order.id, ("pending",), status="ready", nonce=nonce):
                order.status = "ready"
    elif order.status == "processing" and order.request_id is not None:
        try:
            state = await rt.door.poll(order.request_id)
        except GatewayError as exc:
            log.warning("ACME order %s: cannot poll request %s: %s", order.id, order.request_id, exc.detail)
            return order
        if isinstance(state, IssuedCertificate):
            serial = format(state.serial, "x")
            if await rt.store.update_order(order.id, ("processing",), status="valid", serial=serial, nonce=nonce):
                order.status, order.serial = "valid", serial
        elif state.status == "rejected":
            error = problems.unauthorized(f"the request was rejected by an operator: {state.reason or ''}".strip()).to_json()
            if await rt.store.update_order(order.id, ("processing",), status="invalid", error=error, nonce=nonce):
                order.status, order.error = "invalid", error
                await rt.store.release_replacement(order.id)
    return order


def _authz_error(authzs: list[Authorization], now: dt.datetime) -> dict[str, object]:
    subs = []
    for a in authzs:
        status = a.effective_status(now)
        if status == "valid" or status == "pending":
            continue
        failed = next((c for c in a.challenges if c.error), None)
        error = failed.error if failed and failed.error else {
            "type": "urn:ietf:params:acme:error:unauthorized", "detail": f"authorization is {status}"}
        subs.append({**error, "identifier": a.identifier.to_json()})
    doc = problems.unauthorized("an authorization of this order failed").to_json()
    if subs:
        doc["subproblems"] = subs
    return doc


async def order(request: web.Request) -> web.Response:
    signed = await read_signed(request)
    signed.post_as_get()
    rt = runtime(request)
    current, _ = await load_order(rt, signed, request.match_info["order"])
    headers = {"Retry-After": "3"} if current.status == "processing" else None
    return acme_json(order_view(current, signed.urls, rt.now()), headers=headers)


# --- finalize ---------------------------------------------------------------------------
def names_of(subject: x509.Name, extensions: x509.Extensions, *, strict: bool) -> tuple[set[Identifier], str | None]:
    """Every DNS/IP name (SANs and the CN), canonicalised, and the CN; ``strict`` refuses other SANs."""
    names: set[Identifier] = set()
    try:
        sans = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        for n in sans:
            if isinstance(n, x509.DNSName):
                names.add(Identifier(DNS, n.value.lower()))
            elif isinstance(n, x509.IPAddress) and isinstance(n.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                names.add(Identifier(IP, n.value.compressed))
            elif strict:
                raise problems.bad_csr(f"the CSR asks for a {type(n).__name__}, which ACME orders cannot hold")
    cn = None
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) > 1 and strict:
        raise problems.bad_csr("the CSR has more than one common name")
    if cns:
        cn = str(cns[0].value)
        try:
            names.add(Identifier(IP, ipaddress.ip_address(cn).compressed))
        except ValueError:
            names.add(Identifier(DNS, cn.lower()))
    return names, cn


def csr_identifiers(csr: x509.CertificateSigningRequest) -> tuple[set[Identifier], str | None]:
    try:
        extensions = csr.extensions
    except ValueError:
        raise problems.bad_csr("the CSR's extensions are malformed") from None
    return names_of(csr.subject, extensions, strict=True)


def csr_identifiers_of_certificate(cert: x509.Certificate) -> tuple[set[Identifier], str | None]:
    return names_of(cert.subject, cert.extensions, strict=False)


def _general_name(ident: Identifier) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(ident.value)) if ident.type == IP else x509.DNSName(ident.value)


async def finalize(request: web.Request) -> web.Response:
    signed = await read_signed(request, defer_nonce=True)
    async with nonce_settled(request, signed):
        return await _finalize(request, signed)


class _FinalizedElsewhere(Conflict):
    """Another finalize of the same order committed first (raised inside the enrollment)."""


async def _finalize(request: web.Request, signed: Signed) -> web.Response:
    """One commit in the usual case: the certificate, its audit event and the order's
    ready -> valid, together; a concurrent finalize that loses the race rolls its
    certificate back and answers orderNotReady. Configurations that hold requests for
    approval first claim the order (ready -> processing), then hold the request."""
    rt = runtime(request)
    account = signed.require_account()
    current, _ = await load_order(rt, signed, request.match_info["order"], promote=False)
    now = rt.now()
    status = current.effective_status(now)
    if status != "ready":
        raise problems.order_not_ready(f"the order is {status}, not ready")
    payload = signed.payload()
    csr_b64 = payload.get("csr")
    if not isinstance(csr_b64, str):
        raise problems.malformed("finalize needs the CSR as base64url DER in 'csr'")
    try:
        der = b64url_decode(csr_b64)
    except ValueError:
        raise problems.bad_csr("the CSR is not valid base64url") from None
    try:
        csr = load_csr(der)
        check_proof_of_possession(csr)
        key = check_key_strength(csr.public_key())
    except GatewayError as exc:
        raise problems.bad_csr(exc.detail) from None
    profile = rt.door.profile(current.profile)
    if profile is not None and key.name not in profile.key_policy.allowed:
        raise problems.bad_csr(f"key {key.name} is not allowed by profile {current.profile}")
    spki = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki == signed.key.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise problems.bad_csr("the certificate key must not be the account key")
    names, cn = csr_identifiers(csr)
    wanted = set(current.identifiers)
    if names != wanted:
        extra = sorted(i.value for i in names - wanted)
        missing = sorted(i.value for i in wanted - names)
        detail = "the CSR's names do not match the order"
        if extra:
            detail += f"; not in the order: {', '.join(extra)}"
        if missing:
            detail += f"; missing: {', '.join(missing)}"
        raise problems.bad_csr(detail)
    check_identifiers(current.identifiers, *account_policies(signed.acme, account))
    held = signed.acme.record.settings.get("approval") == "manual"
    if held and not await rt.store.update_order(current.id, ("pending", "ready"), status="processing",
                                                nonce=signed.nonce):
        raise problems.order_not_ready("the order is being finalized already")
    claimed = ("processing",) if held else ("pending", "ready")  # the order's status while we issue
    subject_cn = cn or next((i.value for i in current.identifiers if len(i.value) <= 64), None)
    overrides = IssueOverrides(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]) if subject_cn else x509.Name([]),
        sans=tuple(_general_name(i) for i in current.identifiers),
        not_before=current.not_before, not_after=current.not_after,
    )

    pending_nonce = signed.nonce
    nonce_written = False

    async def mark_valid(conn: AsyncConnection, cert: x509.Certificate) -> None:
        """On the certificate's transaction: this request's nonce (store nonces), then
        the order's ready -> valid; either failing rolls the certificate back."""
        nonlocal nonce_written
        if pending_nonce is not None:
            nonce_written = await rt.store.use_pending_nonce_on(conn, pending_nonce)
        if not await rt.store.order_issued(conn, current.id, format(cert.serial_number, "x"),
                                           expect=("pending", "ready")):
            raise _FinalizedElsewhere("the order changed while its certificate was being issued")

    try:
        result = await rt.door.enroll(
            signed.acme.id, csr, entity=entity_name(account.id), entity_kind="account",
            profile=current.profile, overrides=overrides,
            event_type="renew" if current.replaces else "issue", actor=entity_name(account.id),
            request_id=f"acme-{current.id}", within=mark_valid, record=signed.acme.record,
        )
    except _FinalizedElsewhere:
        raise problems.order_not_ready("the order is being finalized already") from None
    except NonceReused:  # a replay used the nonce first: nothing was issued
        raise problems.bad_nonce("the nonce has already been used") from None
    except GatewayError as exc:
        if exc.kind in (ErrorKind.BAD_CSR, ErrorKind.BAD_KEY, ErrorKind.BAD_SIGNATURE, ErrorKind.POLICY,
                        ErrorKind.BAD_REQUEST):
            if held:
                await rt.store.update_order(current.id, claimed, status="ready")
            raise problems.bad_csr(exc.detail) from None
        problem = problems.from_gateway_error(exc)
        if exc.kind is ErrorKind.UNAVAILABLE:
            # nothing was issued or committed (the store or CA could not serve): the order
            # stays finalizable and the client is asked to try again, not failed for good
            if held:
                with contextlib.suppress(GatewayError):
                    await rt.store.update_order(current.id, claimed, status="ready")
            raise problem from None
        if await rt.store.update_order(current.id, claimed, status="invalid", error=problem.to_json()):
            await rt.store.release_replacement(current.id)
        raise problem from None
    if isinstance(result, PendingRequest):
        await rt.store.update_order(current.id, claimed, status="processing", request_id=result.request_id)
        current.status, current.request_id = "processing", result.request_id
        return acme_json(order_view(current, signed.urls, now), headers={"Retry-After": "60"})
    if nonce_written and pending_nonce is not None:
        pending_nonce.used = True  # committed with the certificate
    current.status, current.serial = "valid", format(result.serial, "x")  # committed with the certificate
    return acme_json(order_view(current, signed.urls, now))


# --- certificates -----------------------------------------------------------------------
def _pem_of_der(der: bytes) -> bytes:
    """PEM straight from the stored DER (no parse and re-encode per download)."""
    b64 = base64.b64encode(der)
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


async def certificate(request: web.Request) -> web.Response:
    """The leaf and its chain. Chain 0: up to (not including) the root; chain 1 adds the root."""
    signed = await read_signed(request)
    signed.post_as_get()
    rt = runtime(request)
    account = signed.require_account()
    serial = request.match_info["serial"]
    alternate = int(request.match_info.get("alt", "0") or 0)
    rec = await rt.door.find_certificate(serial) if all(c in "0123456789abcdef" for c in serial) else None
    if rec is None or rec.protocol_config != signed.acme.id:
        raise problems.not_found("no such certificate")
    if rec.entity_id != account.entity_id:
        raise problems.unauthorized("this certificate was issued to another account")
    chain = await rt.chain(rec.ca_id)
    chains = [chain[:-1] if len(chain) > 1 else chain, chain]
    if alternate >= len(chains):
        raise problems.not_found("no such alternate chain")
    links = [(signed.urls.certificate(rec.serial, n), "alternate") for n in range(len(chains)) if n != alternate]
    headers = {"Link": ", ".join(f'<{u}>;rel="{r}"' for u, r in links)} if links else {}
    body = _pem_of_der(rec.der) + rt.chain_pem(rec.ca_id, chains[alternate])
    return web.Response(body=body, headers={"Content-Type": PEM_CHAIN, **headers})

