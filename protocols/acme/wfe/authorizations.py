"""Authorizations and challenges (RFC 8555 sections 7.5, 7.5.1, 7.5.2, 7.4.1 pre-authorization).

Answering a challenge claims its authorization with a compare-and-set and starts
the validation in the background; the response says ``processing`` and clients
poll. The validation's outcome is written with another compare-and-set, so an
authorization is decided once even when replicas race. An attempt whose replica
died is retried after it goes stale.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets

from aiohttp import web


from .. import problems, validation
from ..identifiers import IP, Identifier, IdentifierPolicy, check_identifiers
from ..records import Account, Authorization, Challenge
from .context import Signed, acme_json, nonce_settled, read_signed, runtime
from .runtime import AcmeConfig, AcmeRuntime
from .views import authz_view, challenge_view

log = logging.getLogger("gateway.acme")


def challenge_types_for(ident: Identifier, wildcard: bool, enabled: tuple[str, ...]) -> list[str]:
    """Which challenges can prove control of ``ident`` (wildcards: dns-01 only; IPs: no dns-01)."""
    if wildcard:
        possible = ["dns-01"]
    elif ident.type == IP:
        possible = ["http-01", "tls-alpn-01"]
    else:
        possible = ["http-01", "dns-01", "tls-alpn-01"]
    return [t for t in possible if t in enabled]


def new_authorization(acme: AcmeConfig, account: Account, ident: Identifier, now: dt.datetime) -> Authorization:
    """A pending authorization for an order identifier (``*.x`` becomes ``x`` + wildcard)."""
    wildcard = ident.wildcard
    base = Identifier(ident.type, ident.base)
    types = challenge_types_for(base, wildcard, acme.settings.challenge_types)
    if not types:
        raise problems.rejected_identifier(f"no enabled challenge type can validate {ident.value}")
    return Authorization(
        id=secrets.token_urlsafe(16), config_id=acme.id, account_id=account.id, identifier=base,
        wildcard=wildcard, expires=now + acme.settings.authz_lifetime,
        challenges=[Challenge(t, secrets.token_urlsafe(32)) for t in types], created_at=now,
    )


def account_policies(acme: AcmeConfig, account: Account) -> tuple[IdentifierPolicy, ...]:
    """The configuration's identifier policy plus the account's EAB key restriction."""
    policies = [acme.settings.policy]
    if account.allowed_identifiers:
        policies.append(IdentifierPolicy.parse(account.allowed_identifiers))
    return tuple(policies)


async def owned_authz(rt: AcmeRuntime, signed: Signed, authz_id: str) -> Authorization:
    authz = await rt.store.get_authz(signed.acme.id, authz_id)
    if authz is None:
        raise problems.not_found("no such authorization")
    if authz.account_id != signed.require_account().id:
        raise problems.unauthorized("this authorization belongs to another account")
    return authz


async def authorization(request: web.Request) -> web.Response:
    """POST-as-GET an authorization, or deactivate it with ``{"status": "deactivated"}``."""
    signed = await read_signed(request)
    rt = runtime(request)
    authz = await owned_authz(rt, signed, request.match_info["authz"])
    now = rt.now()
    if not signed.jws.post_as_get:
        payload = signed.payload()
        if payload.get("status") != "deactivated" or len(payload) != 1:
            raise problems.malformed("an authorization can only be updated to {\"status\": \"deactivated\"}")
        if authz.effective_status(now) not in ("pending", "valid"):
            raise problems.malformed(f"the authorization is {authz.effective_status(now)} and cannot be deactivated")
        if not await rt.store.deactivate_authz(authz.id):
            raise problems.malformed("the authorization changed meanwhile and cannot be deactivated")
        authz.status = "deactivated"
        await rt.door.record_event(
            "acme_authz_deactivate", "success", entity_id=signed.require_account().entity_id,
            protocol_config=signed.acme.id, authorization=authz.id, identifier=authz.identifier.value,
        )
    headers = {"Retry-After": "1"} if authz.attempt and authz.status == "pending" else None
    return acme_json(authz_view(authz, signed.urls, now), headers=headers)


async def challenge(request: web.Request) -> web.Response:
    """POST ``{}`` to answer a challenge; POST-as-GET to read it."""
    signed = await read_signed(request, defer_nonce=True)
    async with nonce_settled(request, signed):
        return await _challenge(request, signed)


async def _challenge(request: web.Request, signed: Signed) -> web.Response:
    rt = runtime(request)
    account = signed.require_account()
    authz = await owned_authz(rt, signed, request.match_info["authz"])
    ch = authz.challenge(request.match_info["type"])
    if ch is None:
        raise problems.not_found("no such challenge")
    up = [(signed.urls.authz(authz.id), "up")]
    if signed.jws.post_as_get:
        return acme_json(challenge_view(authz, ch, signed.urls), links=up)
    payload = signed.payload()
    if payload:
        raise problems.malformed("answer a challenge with an empty JSON object {}")
    now = rt.now()
    status = authz.effective_status(now)
    stale_before = now - dt.timedelta(seconds=4 * signed.settings.validation_timeout + 30)
    running = authz.challenge(authz.attempt) if authz.attempt else None
    stale = running is not None and running.started is not None and running.started < stale_before
    if status != "pending" or (running is not None and not stale):
        if status in ("invalid", "deactivated", "expired", "revoked") and ch.status == "pending":
            raise problems.malformed(f"the authorization is {status}")
        return acme_json(challenge_view(authz, ch, signed.urls), links=up)
    if signed.settings.always_valid and running is None:
        log.warning("ACME %s: challenge %s for %s accepted WITHOUT validation (always-valid test mode)",
                    signed.acme.id, ch.type, authz.identifier.value)
        done = dataclasses.replace(ch, status="valid", validated=now, error=None)
        if await rt.store.accept_without_attempt(authz, done, now + signed.settings.valid_authz_lifetime,
                                                 nonce=signed.nonce):
            authz = dataclasses.replace(authz, status="valid", challenges=authz.with_challenge(done))
            return acme_json(challenge_view(authz, done, signed.urls), links=up)
    started = dataclasses.replace(ch, status="processing", started=now, error=None)
    if not await rt.store.start_attempt(authz, started, stale_before, nonce=signed.nonce):
        fresh = await rt.store.get_authz(signed.acme.id, authz.id)
        assert fresh is not None
        current = fresh.challenge(ch.type) or ch
        return acme_json(challenge_view(fresh, current, signed.urls), links=up)
    authz = dataclasses.replace(authz, attempt=ch.type, challenges=authz.with_challenge(started))
    if signed.settings.always_valid:  # a stale attempt taken over: decide it now
        done_authz = await finish(rt, signed.acme, account, authz, started, None)
        return acme_json(challenge_view(done_authz, done_authz.challenge(ch.type) or started, signed.urls), links=up)
    rt.spawn(_validate(rt, signed.acme, account, authz, started), name=f"acme-validate-{authz.id}")
    return acme_json(challenge_view(authz, started, signed.urls), links=up, headers={"Retry-After": "1"})


async def _validate(rt: AcmeRuntime, acme: AcmeConfig, account: Account, authz: Authorization,
                    ch: Challenge) -> None:
    try:
        problem = await validation.validate(ch.type, authz.identifier, ch.token, account.thumbprint, acme.settings)
    except Exception:  # a validator bug must still decide the challenge
        log.exception("ACME validation of %s crashed", authz.identifier.value)
        problem = problems.server_internal("validation failed unexpectedly")
    try:
        await finish(rt, acme, account, authz, ch, problem)
    except Exception:
        log.exception("ACME: could not record the validation of %s", authz.id)


async def finish(rt: AcmeRuntime, acme: AcmeConfig, account: Account, authz: Authorization,
                 ch: Challenge, problem: problems.Problem | None) -> Authorization:
    now = rt.now()
    if problem is None:
        done = dataclasses.replace(ch, status="valid", validated=now, error=None)
        status, expires = "valid", now + acme.settings.valid_authz_lifetime
    else:
        done = dataclasses.replace(ch, status="invalid", error=problem.to_json())
        status, expires = "invalid", authz.expires
    recorded = await rt.store.finish_attempt(authz, status, done, expires)
    if recorded and problem is not None:
        await rt.door.record_event(
            "acme_challenge", "failure", entity_id=account.entity_id, protocol_config=acme.id,
            authorization=authz.id, identifier=authz.identifier.value, challenge=ch.type,
            error=problem.type, detail=problem.detail,
        )
    return dataclasses.replace(authz, status=status, expires=expires, challenges=authz.with_challenge(done))


async def new_authz(request: web.Request) -> web.Response:
    """Pre-authorization (RFC 8555 section 7.4.1), when the configuration offers it."""
    signed = await read_signed(request)
    if not signed.settings.pre_authorization:
        raise problems.not_found("this directory does not offer pre-authorization")
    rt = runtime(request)
    account = signed.require_account()
    payload = signed.payload()
    ident = Identifier.from_json(payload.get("identifier"))
    if ident.wildcard:
        raise problems.rejected_identifier("wildcard names cannot be pre-authorized (order them instead)")
    check_identifiers([ident], *account_policies(signed.acme, account))
    now = rt.now()
    for existing in await rt.store.reusable_authzs(signed.acme.id, account.id, [ident], now, include_pending=True):
        if existing.identifier == ident and not existing.wildcard:
            return acme_json(authz_view(existing, signed.urls, now), 200, location=signed.urls.authz(existing.id))
    authz = new_authorization(signed.acme, account, ident, now)
    await rt.store.create_authz(authz)
    return acme_json(authz_view(authz, signed.urls, now), 201, location=signed.urls.authz(authz.id))

