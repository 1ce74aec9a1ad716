"""Accounts (RFC 8555 sections 7.3, 7.3.2-7.3.6): newAccount, update, deactivation, orders, keyChange.

An ACME account is an end entity of the gateway (kind ``account``, named
``acme:<account id>``), registered through the door in the same transaction as
the account row, so operators see and deactivate ACME accounts like any other
end entity.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import Conflict

from .. import eab, jws, problems
from ..records import Account
from .context import Signed, acme_json, read_signed, runtime
from .views import account_view

MAX_CONTACTS = 10
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def entity_name(account_id: str) -> str:
    return f"acme:{account_id}"


def parse_contacts(value: Any) -> list[str]:
    """``mailto:`` URIs only, each one address without header fields (RFC 8555 section 7.3)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise problems.malformed("contact must be a list of strings")
    if len(value) > MAX_CONTACTS:
        raise problems.malformed(f"at most {MAX_CONTACTS} contacts")
    out = []
    for uri in value:
        scheme, sep, rest = uri.partition(":")
        if not sep or scheme.lower() != "mailto":
            raise problems.unsupported_contact(f"only mailto: contacts are supported ({uri!r})")
        if "?" in rest or "," in rest or not _EMAIL.match(rest):
            raise problems.invalid_contact(f"{uri!r} is not a single e-mail address")
        out.append(f"mailto:{rest}")
    return list(dict.fromkeys(out))


async def new_account(request: web.Request) -> web.Response:
    signed = await read_signed(request, jwk=True, kid=False)
    rt = runtime(request)
    acme, urls = signed.acme, signed.urls
    payload = signed.payload()
    thumb = jws.thumbprint(signed.key)
    existing = await rt.store.account_by_thumbprint(acme.id, thumb)
    if existing is not None:
        if existing.status != "valid":
            raise problems.unauthorized(f"the account for this key is {existing.status}")
        return acme_json(account_view(existing, urls), 200, location=urls.account(existing.id))
    if payload.get("onlyReturnExisting") is True:
        raise problems.account_does_not_exist("no account exists for this key")
    contacts = parse_contacts(payload.get("contact"))
    tos = payload.get("termsOfServiceAgreed")
    if tos is not None and not isinstance(tos, bool):
        raise problems.malformed("termsOfServiceAgreed must be a boolean")
    if acme.settings.terms_of_service and tos is not True:
        raise problems.user_action_required(
            "you must agree to the terms of service (termsOfServiceAgreed: true)", acme.settings.terms_of_service
        )
    binding = payload.get("externalAccountBinding")
    eab_key = None
    if binding is not None:
        eab_key = await eab.verify_binding(
            rt.store, rt.keyring, acme.id, binding, jws.public_jwk(signed.key), urls.new_account
        )
    elif acme.settings.eab_required:
        raise problems.external_account_required("this directory requires an external account binding")
    now = rt.now()
    account_id = secrets.token_urlsafe(16)
    account = Account(
        id=account_id, config_id=acme.id, thumbprint=thumb, jwk=jws.public_jwk(signed.key),
        entity_id=uuid.uuid4().hex, contact=contacts, tos_agreed=bool(tos),
        eab_kid=eab_key.kid if eab_key else None,
        allowed_identifiers=eab_key.identifiers if eab_key else None, created_at=now,
    )
    attributes = {"acme_account": urls.account(account_id), "contact": contacts,
                  **({"eab_kid": eab_key.kid} if eab_key else {})}

    async def register_entity(conn: AsyncConnection) -> None:
        await rt.door.register_entity(conn, entity_name(account_id), entity_id=account.entity_id,
                                      kind="account", config_id=acme.id, attributes=attributes)

    try:
        await rt.store.create_account(
            account, register_entity=register_entity,
            limit=acme.settings.rate_limits.get("accounts_per_config"), now=now,
        )
    except Conflict:
        again = await rt.store.account_by_thumbprint(acme.id, thumb)
        if again is not None:  # the same key registered concurrently
            return acme_json(account_view(again, urls), 200, location=urls.account(again.id))
        raise problems.unauthorized("this external account key is already bound to an account") from None
    await rt.door.record_event(
        "acme_account", "success", entity_id=account.entity_id, protocol_config=acme.id,
        account=account_id, eab_kid=account.eab_kid, actor=entity_name(account_id),
    )
    return acme_json(account_view(account, urls), 201, location=urls.account(account_id))


def _own(signed: Signed, account_id: str) -> Any:
    account = signed.require_account()
    if account.id != account_id:
        raise problems.unauthorized("the JWS 'kid' is not this account")
    return account


async def account(request: web.Request) -> web.Response:
    """POST-as-GET reads the account; a payload updates contacts or deactivates it."""
    signed = await read_signed(request)
    rt = runtime(request)
    acct = _own(signed, request.match_info["account"])
    urls = signed.urls
    if signed.jws.post_as_get:
        return acme_json(account_view(acct, urls), links=[])
    payload = signed.payload()
    changes: dict[str, Any] = {}
    if "contact" in payload:
        changes["contact"] = parse_contacts(payload["contact"])
    if "termsOfServiceAgreed" in payload:
        if payload["termsOfServiceAgreed"] is not True:
            raise problems.malformed("termsOfServiceAgreed can only be set to true")
        changes["tos_agreed"] = True
    status = payload.get("status")
    if status is not None:
        if status != "deactivated":
            raise problems.malformed("an account's status can only be changed to 'deactivated'")
        changes["status"] = "deactivated"
    if changes:
        await rt.store.update_account(acct.id, **changes)
        for name, value in changes.items():
            setattr(acct, name, value)
    if status == "deactivated":
        await rt.door.set_entity_status(acct.entity_id, "inactive", actor=entity_name(acct.id))
        await rt.door.record_event(
            "acme_account_deactivate", "success", entity_id=acct.entity_id, protocol_config=signed.acme.id,
            account=acct.id, actor=entity_name(acct.id),
        )
    return acme_json(account_view(acct, urls))


async def orders(request: web.Request) -> web.Response:
    """The account's orders that are not invalid, in pages with ``Link: rel="next"``."""
    signed = await read_signed(request)
    signed.post_as_get()
    acct = _own(signed, request.match_info["account"])
    rt = runtime(request)
    size = signed.settings.orders_per_page
    try:
        page = int(request.query.get("page", "0"))
    except ValueError:
        raise problems.malformed("page must be a number") from None
    if page < 0:
        raise problems.malformed("page must not be negative")
    ids = await rt.store.list_orders(acct.id, rt.now(), size + 1, page * size)
    links = []
    if len(ids) > size:
        links.append((f"{signed.urls.orders(acct.id)}?page={page + 1}", "next"))
    return acme_json({"orders": [signed.urls.order(i) for i in ids[:size]]}, links=links)


async def key_change(request: web.Request) -> web.Response:
    """Roll the account key over (RFC 8555 section 7.3.5): an inner JWS signed by the new key."""
    signed = await read_signed(request)
    rt = runtime(request)
    acct = signed.require_account()
    outer = signed.payload()
    inner = jws.parse(outer, inner=True)
    if inner.url != signed.jws.url:
        raise problems.malformed("the inner JWS 'url' must equal the outer one")
    assert inner.jwk is not None
    new_key = jws.load_jwk(inner.jwk)
    jws.verify(inner, new_key)
    body = inner.json_payload()
    if body.get("account") != signed.urls.account(acct.id):
        raise problems.malformed("the keyChange 'account' is not the signing account")
    old = body.get("oldKey")
    if not isinstance(old, dict):
        raise problems.malformed("the keyChange payload needs the old key as 'oldKey'")
    if jws.thumbprint(jws.load_jwk(old)) != acct.thumbprint:
        raise problems.unauthorized("'oldKey' is not the account's current key")
    new_thumb = jws.thumbprint(new_key)
    if new_thumb == acct.thumbprint:
        raise problems.malformed("the new key is the current key")
    taken = await rt.store.account_by_thumbprint(signed.acme.id, new_thumb)
    if taken is not None:
        raise problems.conflict("the new key already belongs to an account", signed.urls.account(taken.id))
    try:
        changed = await rt.store.change_key(acct.id, acct.thumbprint, new_thumb, jws.public_jwk(new_key))
    except Conflict:
        raise problems.conflict("the new key already belongs to an account") from None
    if not changed:
        raise problems.conflict("the account key changed meanwhile; retry")
    await rt.door.record_event(
        "acme_key_change", "success", entity_id=acct.entity_id, protocol_config=signed.acme.id,
        account=acct.id, actor=entity_name(acct.id),
    )
    acct.thumbprint, acct.jwk = new_thumb, jws.public_jwk(new_key)
    return acme_json(account_view(acct, signed.urls))
