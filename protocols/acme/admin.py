"""Admin API for ACME: EAB keys (created here, the HMAC key shown once) and accounts.

Routes live under ``/admin/acme/<config-id>/...`` and are authenticated by the
admin sub-app's middleware; they are added to its OpenAPI document too, so the
document keeps listing every route the router serves. Handlers reach the core
through the ACME door only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.api import OPENAPI
from gateway.admin.auth import actor
from gateway.admin.inputs import Fields, QueryArgs, page, read_json
from gateway.admin.openapi import operation, ref
from gateway.admin.spec import PAGE, Reply, Route
from gateway.door import Door, door
from gateway.errors import BadRequest, NotFound

from . import eab
from .keyring import Keyring
from .records import Account
from .store import AcmeStore

KEYRING = web.AppKey("acme_admin_keyring", Keyring)
PROTOCOL = "acme"


def _door(request: web.Request) -> Door:
    return door(request, PROTOCOL)


async def _acme_config(request: web.Request) -> str:
    config_id = request.match_info["config"]
    if await _door(request).find_configuration(config_id) is None:
        raise NotFound(f"no ACME configuration {config_id!r}")
    return config_id


def _store(request: web.Request) -> AcmeStore:
    d = _door(request)
    return AcmeStore(d.tables, d.clock)


def _keyring(request: web.Request) -> Keyring:
    app = request.app
    if KEYRING not in app:
        raise RuntimeError("ACME admin routes are not mounted")
    return app[KEYRING]


async def create_eab_key(request: web.Request) -> web.Response:
    config_id = await _acme_config(request)
    f = Fields(await read_json(request, optional=True))
    identifiers = f.text_list("identifiers")
    label = f.text("label", default="") or ""
    f.done()
    try:
        created = await eab.create_key(
            _store(request), _keyring(request), config_id, identifiers=identifiers or None, label=label,
            created_by=actor(request),
        )
    except ValueError as exc:
        raise BadRequest(f"identifiers: {exc}") from None
    await _door(request).record_event(
        "acme_eab_create", "success", protocol_config=config_id, kid=created.record.kid, actor=actor(request)
    )
    return web.json_response(created.view(), status=201)


async def list_eab_keys(request: web.Request) -> web.Response:
    config_id = await _acme_config(request)
    q = QueryArgs(request)
    limit, offset = q.page()
    q.done()
    keys = await _store(request).list_eab(config_id, limit + 1, offset)
    return web.json_response(page([k.view() for k in keys[:limit]], limit, offset, more=len(keys) > limit))


async def revoke_eab_key(request: web.Request) -> web.Response:
    config_id = await _acme_config(request)
    kid = request.match_info["kid"]
    key = await _store(request).revoke_eab(config_id, kid)
    if key is None:
        raise NotFound(f"no EAB key {kid!r} in configuration {config_id!r}")
    await _door(request).record_event(
        "acme_eab_revoke", "success", protocol_config=config_id, kid=kid, account=key.account_id,
        actor=actor(request),
    )
    return web.Response(status=204)


def account_admin_view(account: Account) -> dict[str, Any]:
    return {
        "id": account.id, "config": account.config_id, "status": account.status, "contact": account.contact,
        "eab_kid": account.eab_kid, "entity_id": account.entity_id, "entity_status": account.entity_status,
        "thumbprint": account.thumbprint, "created_at": account.created_at.isoformat(),
    }


async def list_accounts(request: web.Request) -> web.Response:
    config_id = await _acme_config(request)
    q = QueryArgs(request)
    limit, offset = q.page()
    q.done()
    accounts = await _store(request).list_accounts(config_id, limit + 1, offset)
    for account in accounts[:limit]:  # the end entity's state is the core's: ask the door
        entity = await _door(request).entity(account.entity_id)
        account.entity_status = entity.status if entity is not None else "active"
    return web.json_response(
        page([account_admin_view(a) for a in accounts[:limit]], limit, offset, more=len(accounts) > limit)
    )


ROUTES = (
    Route("POST", "/acme/{config}/eab-keys", create_eab_key, "createAcmeEabKey",
          "Create an ACME External Account Binding key (the HMAC key is in this response only)", "ACME",
          (Reply(201, "The new key, with its HMAC key (base64url)", "AcmeEabKeyCreated"),),
          body="AcmeEabKeyCreate", body_optional=True, errors=(404,)),
    Route("GET", "/acme/{config}/eab-keys", list_eab_keys, "listAcmeEabKeys", "List EAB keys (never the HMAC keys)",
          "ACME", (Reply(200, "EAB keys", "AcmeEabKeyList"),), query=PAGE, errors=(404,)),
    Route("DELETE", "/acme/{config}/eab-keys/{kid}", revoke_eab_key, "revokeAcmeEabKey",
          "Revoke an EAB key; an account bound to it is deactivated", "ACME", (Reply(204, "Revoked"),),
          errors=(404,)),
    Route("GET", "/acme/{config}/accounts", list_accounts, "listAcmeAccounts", "List ACME accounts", "ACME",
          (Reply(200, "Accounts", "AcmeAccountList"),), query=PAGE, errors=(404,)),
)

_S = {"type": "string"}
_NS = {"type": ["string", "null"]}
_EAB_KEY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kid": _S, "config": _S, "label": _S,
        "identifiers": {"type": ["array", "null"], "items": _S,
                        "description": "Allowed names (example.com, *.example.com) and IP networks; null = any"},
        "account": _NS, "bound_at": _NS, "revoked": {"type": "boolean"}, "created_by": _S,
        "created_at": {"type": "string", "format": "date-time"},
    },
    "required": ["kid", "config", "revoked", "created_at"],
}


def _list_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": ref(item)}, "limit": {"type": "integer"},
                       "offset": {"type": "integer"}, "next_offset": {"type": ["integer", "null"]}},
        "required": ["items", "limit", "offset", "next_offset"],
    }


SCHEMAS: dict[str, Any] = {
    "AcmeEabKeyCreate": {
        "type": "object", "additionalProperties": False,
        "properties": {"identifiers": {"type": "array", "items": _S}, "label": _S},
    },
    "AcmeEabKey": _EAB_KEY,
    "AcmeEabKeyCreated": {
        **_EAB_KEY,
        "properties": {**_EAB_KEY["properties"],
                       "hmac_key": {"type": "string", "description": "base64url HMAC key; shown only once"}},
        "required": [*_EAB_KEY["required"], "hmac_key"],
    },
    "AcmeEabKeyList": _list_of("AcmeEabKey"),
    "AcmeAccount": {
        "type": "object",
        "properties": {"id": _S, "config": _S, "status": _S, "contact": {"type": "array", "items": _S},
                       "eab_kid": _NS, "entity_id": _S, "entity_status": _S, "thumbprint": _S,
                       "created_at": {"type": "string", "format": "date-time"}},
        "required": ["id", "config", "status"],
    },
    "AcmeAccountList": _list_of("AcmeAccount"),
}


def mount(admin: web.Application, acme_door: Door) -> None:
    """Add the routes to the admin sub-app; the EAB keyring is built here, once per app."""
    admin[KEYRING] = Keyring(acme_door.sealing_passphrase())
    for route in ROUTES:
        admin.router.add_route(route.method, route.path, route.handler, name=route.operation_id)
    doc = admin.get(OPENAPI)
    if doc is not None:
        paths = dict(doc["paths"])
        for route in ROUTES:
            paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
        doc["paths"] = paths
        components = dict(doc["components"])
        components["schemas"] = {**components["schemas"], **SCHEMAS}
        doc["components"] = components
        tags = [t for t in doc.get("tags", []) if t.get("name") != "ACME"]
        doc["tags"] = [*tags, {"name": "ACME"}]
