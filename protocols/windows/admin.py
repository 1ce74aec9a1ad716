"""Admin API for Windows enrollment under ``/admin/windows/<config>/users``: the
UsernameToken users (list, create with a password shown once, delete), as
``gateway windows user`` manages them (:mod:`.users`).

Routes are :class:`gateway.admin.spec.Route` entries added to the admin OpenAPI document,
so the admin app's middleware authenticates them and the document lists them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway.admin import openapi
from gateway.admin.api import extend
from gateway.admin.auth import actor
from gateway.admin.inputs import Fields, QueryArgs, read_json
from gateway.admin.spec import Reply, Route
from gateway.door import CredentialInfo, Door, ProtocolConfigRecord, door

from .http import PROTOCOL
from .users import USERNAME_PATTERN, add_user, check_name, remove_user, templates_of, windows_configuration

TAG = "Windows"


def _door(request: web.Request) -> Door:
    return door(request, PROTOCOL)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def user_view(user: CredentialInfo, rec: ProtocolConfigRecord, now: dt.datetime) -> dict[str, Any]:
    return {"username": user.username, "disabled": user.disabled, "locked": user.locked(now),
            "failures": user.failures, "templates": templates_of(rec, str(user.username)),
            "created_at": _iso(user.created_at), "last_used_at": _iso(user.last_used_at)}


async def list_users(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec = await windows_configuration(d, request.match_info["id"])
    now = d.clock()
    return web.json_response({"items": [user_view(u, rec, now) for u in await d.credentials.list(rec.id, kind="user")]})


async def create_user(request: web.Request) -> web.Response:
    d = _door(request)
    rec = await windows_configuration(d, request.match_info["id"])
    f = Fields(await read_json(request))
    username = check_name(f.required_text("username"))
    password = f.text("password")
    templates = f.text_list("templates") or []
    f.done()
    issued = await add_user(d, rec, username, password, templates, actor=actor(request))
    rec = await windows_configuration(d, rec.id)
    body = {**user_view(issued.credential, rec, d.clock()), "password": issued.secret}
    return web.json_response(body, status=201, headers={"Cache-Control": "no-store"})


async def delete_user(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec = await windows_configuration(d, request.match_info["id"])
    await remove_user(d, rec, request.match_info["username"], actor=actor(request))
    return web.Response(status=204)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/windows/{id}/users", list_users, "listWindowsUsers",
          "UsernameToken users of a Windows configuration (never their passwords)", TAG,
          (Reply(200, "Users", "WindowsUserList"),), errors=(404,)),
    Route("POST", "/windows/{id}/users", create_user, "createWindowsUser",
          "Add a UsernameToken user, optionally allowed to enroll in some templates", TAG,
          (Reply(201, "The user and its password, shown once", "WindowsUserCreated"),),
          body="WindowsUserCreate", errors=(404, 409)),
    Route("DELETE", "/windows/{id}/users/{username}", delete_user, "deleteWindowsUser",
          "Delete a user and take it out of every template's enroll list", TAG,
          (Reply(204, "Deleted"),), errors=(404,)),
)

USERNAME = {"type": "string", "pattern": USERNAME_PATTERN,
            "description": "2-64 letters, digits and ._@\\- starting with a letter or digit"}
_S = {"type": "string"}
_DT = {"type": "string", "format": "date-time"}
_NDT = {"type": ["string", "null"], "format": "date-time"}
_USER = {"username": _S, "disabled": {"type": "boolean"}, "locked": {"type": "boolean"},
         "failures": {"type": "integer"}, "templates": {"type": "array", "items": _S,
                                                        "description": "Templates it may enroll in"},
         "created_at": _DT, "last_used_at": _NDT}
SCHEMAS: dict[str, dict[str, Any]] = {
    "WindowsUserCreate": openapi.object_schema(
        {"username": USERNAME,
         "password": {"type": "string", "minLength": 8, "maxLength": 1024, "description": "Omit to generate one"},
         "templates": {"type": "array", "items": _S, "description": (
             "Templates (by name) whose enroll list gets the user; an unknown one is 404")}},
        ["username"], closed=True),
    "WindowsUser": openapi.object_schema(_USER, list(_USER)),
    "WindowsUserCreated": openapi.object_schema({**_USER, "password": _S}, [*_USER, "password"]),
    "WindowsUserList": openapi.object_schema(
        {"items": {"type": "array", "items": openapi.ref("WindowsUser")}}, ["items"]),
}


def mount_admin(admin: web.Application) -> None:
    """Register the routes and extend the admin OpenAPI document with them."""
    extend(admin, ROUTES, SCHEMAS, TAG, path_schemas={"username": USERNAME})
