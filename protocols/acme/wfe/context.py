"""The request pipeline every ACME POST goes through, and the URLs of a directory.

Steps, in order (step-ca's shape, Boulder's checks): configuration, content type,
JWS structure and algorithm, ``url`` header equal to the request URL, nonce
authentic and unexpired, then the key: an embedded ``jwk`` where allowed, or the
``kid`` account (loaded in the same transaction that consumes the nonce) and its end
entity's state (the core's, asked of the door), then the signature. Handlers
receive a :class:`Signed` only after all of it passed.

Handlers that write anyway (newOrder, challenge, finalize) ask for the nonce to be
*deferred*: the account is read without a transaction of its own and the nonce is
recorded by the handler's first write, in that write's transaction, so a replayed
request commits nothing. :func:`nonce_settled` records it on every path where the
handler did not write (and answers ``badNonce`` if it was used meanwhile).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Sequence

import josepy
from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import GatewayError

from .. import jws, problems
from ..nonces import MemoryNonces, NonceReused
from ..records import Account
from ..settings import AcmeSettings
from ..store import PendingNonce
from .runtime import AcmeConfig, AcmeRuntime

JOSE_JSON = "application/jose+json"
RUNTIME = web.AppKey("acme_runtime", AcmeRuntime)


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise problems.malformed(f"{what} must be an RFC 3339 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise problems.malformed(f"{what} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise problems.malformed(f"{what} must carry a time zone offset")
    return parsed.astimezone(dt.timezone.utc)


@dataclass(frozen=True)
class Urls:
    """Absolute URLs of one ACME directory (``<origin>/acme/<config-id>``)."""

    origin: str
    config_id: str

    @property
    def base(self) -> str:
        return f"{self.origin}/acme/{self.config_id}"

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    def __getattr__(self, name: str) -> str:
        path = _PATHS.get(name)
        if path is None:
            raise AttributeError(name)
        return f"{self.base}/{path}"

    def account(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}/finalize"

    def authz(self, authz_id: str) -> str:
        return f"{self.base}/authz/{authz_id}"

    def challenge(self, authz_id: str, challenge_type: str) -> str:
        return f"{self.base}/chall/{authz_id}/{challenge_type}"

    def certificate(self, serial: str, alternate: int = 0) -> str:
        return f"{self.base}/cert/{serial}" + (f"/{alternate}" if alternate else "")

    def account_id(self, kid: str) -> str | None:
        """The account id in a ``kid`` URL of this directory, if it is one."""
        prefix = f"{self.base}/acct/"
        if not kid.startswith(prefix):
            return None
        rest = kid[len(prefix):]
        return rest if rest and "/" not in rest else None


_PATHS = {
    "new_nonce": "new-nonce", "new_account": "new-account", "new_order": "new-order",
    "new_authz": "new-authz", "revoke_cert": "revoke-cert", "key_change": "key-change",
    "renewal_info": "renewal-info",
}


def urls_for(request: web.Request, acme: AcmeConfig) -> Urls:
    origin = acme.settings.external_url or f"https://{request.host}"
    return Urls(origin, acme.id)


def request_url(request: web.Request, acme: AcmeConfig) -> str:
    origin = acme.settings.external_url or f"https://{request.host}"
    return origin + request.path_qs


def runtime(request: web.Request) -> AcmeRuntime:
    return request.config_dict[RUNTIME]


async def acme_config(request: web.Request) -> AcmeConfig:
    return await runtime(request).config(request.match_info["config"])


@dataclass(frozen=True)
class Signed:
    """A POST whose JWS passed every check."""

    acme: AcmeConfig
    urls: Urls
    jws: jws.ParsedJWS
    key: josepy.JWK
    account: Account | None  # set for kid-signed requests
    nonce: PendingNonce | None = None  # set when the handler records the nonce (deferred)

    @property
    def settings(self) -> AcmeSettings:
        return self.acme.settings

    def payload(self) -> dict[str, Any]:
        return self.jws.json_payload()

    def require_account(self) -> Account:
        assert self.account is not None
        return self.account

    def post_as_get(self) -> None:
        if not self.jws.post_as_get:
            raise problems.malformed("this resource takes POST-as-GET (an empty payload)")


async def read_signed(request: web.Request, *, jwk: bool = False, kid: bool = True,
                      defer_nonce: bool = False) -> Signed:
    """Authenticate an ACME POST; ``jwk``/``kid`` say which key forms this resource accepts.

    ``defer_nonce`` (kid-signed requests with a payload only: POST-as-GET reads
    keep the one-transaction path): leave the nonce in ``Signed.nonce`` for the
    handler's own write; the handler must run inside :func:`nonce_settled`.
    """
    rt = runtime(request)
    acme = await acme_config(request)
    urls = urls_for(request, acme)
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != JOSE_JSON:
        raise problems.unsupported_media_type(f"Content-Type must be {JOSE_JSON}")
    body = await request.read()
    parsed = jws.parse(body)
    if parsed.url != request_url(request, acme):
        raise problems.unauthorized("the JWS 'url' header does not match the request URL")
    if parsed.nonce is None:
        raise problems.bad_nonce("the JWS has no nonce")
    expires = rt.check_nonce(parsed.nonce, acme.settings.nonce_lifetime)
    if expires is None:
        raise problems.bad_nonce("the nonce is invalid or expired")
    if parsed.jwk is not None:
        if not jwk:
            raise problems.malformed("this resource requires a 'kid' (account URL), not a 'jwk'")
        key = jws.load_jwk(parsed.jwk)
        jws.verify(parsed, key)
        await _use_nonce(rt, parsed.nonce, expires)
        return Signed(acme, urls, parsed, key, None)
    if not kid:
        raise problems.malformed("this resource requires a 'jwk', not a 'kid'")
    assert parsed.kid is not None
    account_id = urls.account_id(parsed.kid)
    if account_id is None:
        await _use_nonce(rt, parsed.nonce, expires)
        raise problems.account_does_not_exist("the 'kid' is not an account URL of this directory")
    pending: PendingNonce | None = None
    if isinstance(rt.nonces, MemoryNonces):  # single use tracked in memory: no write for the nonce at all
        await _use_nonce(rt, parsed.nonce, expires)
        account = await rt.store.get_account(acme.id, account_id, rt.door.entity_status)
    elif defer_nonce and not parsed.post_as_get:
        pending = PendingNonce(parsed.nonce, expires)
        account = await rt.store.get_account(acme.id, account_id, rt.door.entity_status)
        if account is None:
            await _use_nonce(rt, parsed.nonce, expires)
    else:
        try:
            # the account's end entity status is read in the nonce's transaction (one round trip)
            account = await rt.store.use_nonce_and_load_account(parsed.nonce, expires, acme.id, account_id,
                                                                rt.door.entity_status_on)
        except NonceReused:
            raise problems.bad_nonce("the nonce has already been used") from None
    if account is None:
        raise problems.account_does_not_exist("no account with this 'kid'")
    try:
        key = rt.account_key(account)
        jws.verify(parsed, key)
        if account.status != "valid":
            raise problems.unauthorized(f"the account is {account.status}")
        if account.entity_status != "active":
            raise problems.unauthorized(f"the account's end entity is {account.entity_status}")
    except Exception:
        if pending is not None:  # refused requests use up their nonce, deferred or not
            await _use_nonce(rt, parsed.nonce, expires)
        raise
    return Signed(acme, urls, parsed, key, account, pending)


@contextlib.asynccontextmanager
async def nonce_settled(request: web.Request, signed: Signed) -> AsyncIterator[None]:
    """Make sure a deferred nonce ends up recorded, whatever the handler did.

    On success, a handler that did not write records it now (``badNonce`` instead of
    its answer if another request used it meanwhile: the handler only read). On
    failure, a reused nonce takes precedence over the handler's error, as it would
    have without deferral; a store failure while recording keeps the original error.
    """
    pending = signed.nonce
    if pending is None:
        yield
        return
    try:
        yield
    except Exception:
        if not pending.used:
            try:
                await runtime(request).store.use_pending_nonce(pending)
            except NonceReused:
                raise problems.bad_nonce("the nonce has already been used") from None
            except GatewayError:
                pass
        raise
    if not pending.used:
        try:
            await runtime(request).store.use_pending_nonce(pending)
        except NonceReused:
            raise problems.bad_nonce("the nonce has already been used") from None


async def _use_nonce(rt: AcmeRuntime, nonce: str, expires: dt.datetime) -> None:
    try:
        if isinstance(rt.nonces, MemoryNonces):
            rt.nonces.use(nonce)
        else:
            await rt.store.use_nonce(nonce, expires)
    except NonceReused:
        raise problems.bad_nonce("the nonce has already been used") from None


def acme_json(data: Any, status: int = 200, *, location: str | None = None,
              links: Sequence[tuple[str, str]] = (), headers: dict[str, str] | None = None) -> web.Response:
    h: CIMultiDict[str] = CIMultiDict()
    if location:
        h["Location"] = location
    for url, rel in links:
        h.add("Link", f'<{url}>;rel="{rel}"')
    for k, v in (headers or {}).items():
        h[k] = v
    return web.Response(body=json.dumps(data, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=h)
