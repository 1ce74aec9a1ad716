"""Admin API for EST users under ``/admin/est/<label>/users``: the HTTP Basic users of a
label (list, create with a password shown once, delete), as ``gateway est user`` manages
them, so the console and scripts can too. Passwords are enrollment credentials
(``door.credentials``: scrypt, lockout)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from gateway.admin import openapi
from gateway.admin.api import extend
from gateway.admin.auth import actor
from gateway.admin.inputs import Fields, QueryArgs, read_json
from gateway.admin.spec import Reply, Route
from gateway.door import CredentialInfo, Door, ProtocolConfigRecord, door
from gateway.errors import BadRequest, NotFound

from .routes import PROTOCOL

TAG = "EST"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@\-]{1,63}$"
"""What the admin API takes (the CLI takes any Basic user-id without ':')."""
_USERNAME = re.compile(USERNAME_PATTERN)


def _door(request: web.Request) -> Door:
    return door(request, PROTOCOL)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def _label(d: Door, label: str) -> ProtocolConfigRecord:
    rec = await d.find_configuration(label)
    if rec is None:
        raise NotFound(f"no EST label {label!r}")
    return rec


def user_view(user: CredentialInfo, now: dt.datetime) -> dict[str, Any]:
    return {"username": user.username, "disabled": user.disabled, "locked": user.locked(now),
            "failures": user.failures, "created_at": _iso(user.created_at), "last_used_at": _iso(user.last_used_at)}


async def list_users(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec = await _label(d, request.match_info["id"])
    now = d.clock()
    return web.json_response({"items": [user_view(u, now) for u in await d.credentials.list(rec.id, kind="user")]})


async def create_user(request: web.Request) -> web.Response:
    d = _door(request)
    f = Fields(await read_json(request))
    username = f.required_text("username")
    password = f.text("password")
    f.done()
    if not _USERNAME.match(username):
        raise BadRequest(f"user name {username!r} is not allowed: 2-64 letters, digits and ._@- "
                         "starting with a letter or digit")
    rec = await _label(d, request.match_info["id"])
    if await d.credentials.find_user(rec.id, username) is not None:
        from gateway.errors import Conflict

        raise Conflict(f"label {rec.id} already has a user {username!r}")
    issued = await d.credentials.create_user(rec.id, username, password, actor=actor(request))
    body = {**user_view(issued.credential, d.clock()), "password": issued.secret}
    return web.json_response(body, status=201, headers={"Cache-Control": "no-store"})


async def delete_user(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec = await _label(d, request.match_info["id"])
    user = await d.credentials.find_user(rec.id, request.match_info["username"])
    if user is None:
        raise NotFound(f"label {rec.id} has no user {request.match_info['username']!r}")
    await d.credentials.delete(rec.id, user.id, actor=actor(request))
    return web.Response(status=204)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/est/{id}/users", list_users, "listEstUsers", "HTTP Basic users of an EST label (never passwords)",
          TAG, (Reply(200, "Users", "EstUserList"),), errors=(404,)),
    Route("POST", "/est/{id}/users", create_user, "createEstUser", "Add an HTTP Basic user to an EST label", TAG,
          (Reply(201, "The user and its password, shown once", "EstUserCreated"),),
          body="EstUserCreate", errors=(404, 409)),
    Route("DELETE", "/est/{id}/users/{username}", delete_user, "deleteEstUser", "Delete an EST user", TAG,
          (Reply(204, "Deleted"),), errors=(404,)),
)

USERNAME = {"type": "string", "pattern": USERNAME_PATTERN,
            "description": "2-64 letters, digits and ._@- starting with a letter or digit"}
_S = {"type": "string"}
_DT = {"type": "string", "format": "date-time"}
_NDT = {"type": ["string", "null"], "format": "date-time"}
_USER = {"username": _S, "disabled": {"type": "boolean"}, "locked": {"type": "boolean"},
         "failures": {"type": "integer"}, "created_at": _DT, "last_used_at": _NDT}
SCHEMAS: dict[str, dict[str, Any]] = {
    "EstUserCreate": openapi.object_schema(
        {"username": USERNAME,
         "password": {"type": "string", "minLength": 8, "maxLength": 1024, "description": "Omit to generate one"}},
        ["username"], closed=True),
    "EstUser": openapi.object_schema(_USER, list(_USER)),
    "EstUserCreated": openapi.object_schema({**_USER, "password": _S}, [*_USER, "password"]),
    "EstUserList": openapi.object_schema({"items": {"type": "array", "items": openapi.ref("EstUser")}}, ["items"]),
}


def mount_admin(admin: web.Application) -> None:
    """Register the routes and extend the admin OpenAPI document with them."""
    extend(admin, ROUTES, SCHEMAS, TAG, path_schemas={"username": USERNAME})
