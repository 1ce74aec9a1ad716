"""Admin API keys: create, list, revoke; roles and expiry. Shared by the CLI and the API.

A key is shown once at creation; the store keeps its SHA-256 only, and no listing shows
either. A key has a role (gateway.admin.roles: the six PKIaaS roles, plus
``admin`` = Owner and ``auditor`` = read everything, the names from before roles). Each create and revoke is an audit event naming who did it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from aiohttp import web

from ..errors import BadRequest, Conflict, NotFound
from ..runtime import Gateway
from ..secrets import api_key_hash, new_token
from ..store.records import ApiKeyRecord
from ..web.keys import GATEWAY
from .auth import CERT_PREFIX, actor
from .openapi import API_KEY_NAME_PATTERN, LIFETIME_PATTERN
from .inputs import Fields, QueryArgs, page_in_memory, read_json
from .spec import PAGE, Reply, Route

from .roles import ROLES  # noqa: E402 - re-exported: the API key roles are the console's roles
NAME_PATTERN = API_KEY_NAME_PATTERN
_NAME = re.compile(NAME_PATTERN)
_SHORT = re.compile(LIFETIME_PATTERN)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_lifetime(value: str, *, iso: bool = True) -> dt.timedelta:
    """``90m``, ``12h``, ``30d``, ``2w`` (1 to 99999 units), or (``iso``) an ISO 8601 duration."""
    from ..config import parse_duration
    from ..errors import ConfigError

    match = _SHORT.match(value.strip())
    if match:
        return dt.timedelta(**{_UNITS[value.strip()[-1]]: int(value.strip()[:-1])})
    if not iso:
        raise BadRequest(f"expires_in must be like 90m, 12h, 30d or 2w, got {value!r}")
    try:
        return parse_duration(value.strip().upper(), "expires")
    except ConfigError:
        raise BadRequest(f"expires must be like 30d, 12h or P30D, got {value!r}") from None


def key_view(rec: ApiKeyRecord, now: dt.datetime) -> dict[str, Any]:
    """What a listing shows: never the key nor its hash."""
    expired = rec.expires_at is not None and rec.expires_at <= now
    return {
        "id": rec.id, "name": rec.name, "role": rec.role,
        "kind": "certificate" if rec.key_sha256.startswith(CERT_PREFIX) else "api_key",
        "created_at": rec.created_at.isoformat(),
        "expires_at": rec.expires_at.isoformat() if rec.expires_at else None,
        "status": "revoked" if rec.revoked else "expired" if expired else "active",
    }


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadRequest(f"an API key name is 1-64 letters, digits and _.@:- (starting with a letter or digit), got {name!r}")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {list(ROLES)}, got {role!r}")
    return role


async def create_key(
    gw: Gateway, name: str, *, role: str = "admin", expires_at: dt.datetime | None = None, by: str,
) -> tuple[ApiKeyRecord, str]:
    """A new key (returned once, in clear) and its record; Conflict on a taken name."""
    check_name(name)
    check_role(role)
    now = gw.clock()
    if expires_at is not None and expires_at <= now:
        raise BadRequest("expires_at must be in the future")
    key = new_token(32)
    rec = ApiKeyRecord(id=uuid.uuid4().hex, name=name, key_sha256=api_key_hash(key), role=role,
                       expires_at=expires_at, created_at=now)
    async with gw.store.transaction() as q:
        if await q.api_keys.find(name) is not None:
            raise Conflict(f"an API key named {name!r} already exists")
        await q.api_keys.insert(rec)
    await gw.authority.events.record(
        "apikey_create", "success", actor=by, key_id=rec.id, key_name=name, role=role,
        expires_at=expires_at.isoformat() if expires_at else None,
    )
    return rec, key


async def list_keys(gw: Gateway) -> list[ApiKeyRecord]:
    async with gw.store.read() as q:
        return await q.api_keys.list()


async def revoke_key(gw: Gateway, name_or_id: str, *, by: str) -> ApiKeyRecord:
    """Revoke by name or id; NotFound if none, Conflict if already revoked."""
    async with gw.store.transaction() as q:
        rec = await q.api_keys.find(name_or_id)
        if rec is None:
            raise NotFound(f"no API key named (or with id) {name_or_id!r}")
        if not await q.api_keys.revoke(rec.id):
            raise Conflict(f"API key {rec.name!r} is already revoked")
    await gw.authority.events.record("apikey_revoke", "success", actor=by, key_id=rec.id, key_name=rec.name)
    rec.revoked = True
    return rec


# --- admin API routes -----------------------------------------------------------------
async def list_api_keys(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    args.done()
    gw = request.app[GATEWAY]
    now = gw.clock()
    return web.json_response(page_in_memory([key_view(r, now) for r in await list_keys(gw)], limit, offset))


async def create_api_key(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request))
    name = f.required_text("name")
    role = f.text("role", default="admin", choices=ROLES)
    expires_at = f.time("expires_at")
    expires_in = f.text("expires_in")
    f.done()
    assert role is not None
    if expires_at is not None and expires_in is not None:
        raise BadRequest("give expires_at or expires_in, not both")
    if expires_in is not None:
        expires_at = gw.clock() + parse_lifetime(expires_in, iso=False)
    rec, key = await create_key(gw, name, role=role, expires_at=expires_at, by=actor(request))
    return web.json_response({**key_view(rec, gw.clock()), "key": key}, status=201)


async def revoke_api_key(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    Fields(await read_json(request, optional=True)).done()
    rec = await revoke_key(gw, request.match_info["name"], by=actor(request))
    return web.json_response(key_view(rec, gw.clock()))


_TAG = "API keys"
ROUTES = (
    Route("GET", "/api-keys", list_api_keys, "listApiKeys", "Admin API keys and client certificates (never the key)",
          _TAG, (Reply(200, "Keys, oldest first", "ApiKeyList"),), query=PAGE),
    Route("POST", "/api-keys", create_api_key, "createApiKey", "Create an admin API key (shown once)", _TAG,
          (Reply(201, "The key's record and the key itself, shown only here", "ApiKeyCreated"),),
          body="ApiKeyCreate", errors=(403, 409)),
    Route("POST", "/api-keys/{name}/revoke", revoke_api_key, "revokeApiKey", "Revoke an API key by name or id",
          _TAG, (Reply(200, "The key, now revoked", "ApiKey"),), body="Empty", body_optional=True,
          errors=(403, 404, 409)),
)


