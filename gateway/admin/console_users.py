"""Admin routes for console users (Owner only: area ``access``): list, create with the
password shown once, change role, remove. The CLI (``gateway user``) and the console's
Users page use the same operations (gateway.console.users)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..console.users import ConsoleUser, ConsoleUsers
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, page_in_memory, read_json
from .roles import ROLES
from .spec import PAGE, Reply, Route

TAG = "Console users"


def user_view(user: ConsoleUser) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "client_certificate": user.cert_sha256,
            "created_at": user.created_at.isoformat(), "created_by": user.created_by}


def _users(request: web.Request) -> ConsoleUsers:
    gw = request.app[GATEWAY]
    return ConsoleUsers(gw.store, gw.clock)


async def list_users(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    args.done()
    return web.json_response(page_in_memory([user_view(u) for u in await _users(request).list()], limit, offset))


async def create_user(request: web.Request) -> web.Response:
    f = Fields(await read_json(request))
    username = f.required_text("username")
    role = f.required_text("role", choices=ROLES)
    f.done()
    users = _users(request)
    issued = await users.add(username, role, actor=actor(request))
    user = await users.get(issued.credential.username or username)
    assert user is not None
    return web.json_response({**user_view(user), "password": issued.secret}, status=201,
                             headers={"Cache-Control": "no-store"})


async def set_role(request: web.Request) -> web.Response:
    f = Fields(await read_json(request))
    role = f.required_text("role", choices=ROLES)
    f.done()
    users = _users(request)
    name = request.match_info["username"]
    await users.set_role(name, role, actor=actor(request))
    user = await users.get(name)
    assert user is not None
    return web.json_response(user_view(user))


async def delete_user(request: web.Request) -> web.Response:
    await _users(request).remove(request.match_info["username"], actor=actor(request))
    return web.Response(status=204)


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_USER_PROPS = {"username": _STR, "role": {"type": "string", "enum": list(ROLES)}, "client_certificate": _NSTR,
               "created_at": _STR, "created_by": _NSTR}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ConsoleUser": {"type": "object", "properties": _USER_PROPS},
    "ConsoleUserCreated": {"type": "object", "properties": {**_USER_PROPS, "password": _STR}},
    "ConsoleUserList": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ConsoleUser"}}}},
    "ConsoleUserCreate": {"type": "object", "additionalProperties": False, "required": ["username", "role"],
                          "properties": {"username": {"type": "string", "minLength": 2, "maxLength": 64,
                                                      "pattern": "^[!-9;-~]([ !-9;-~]{0,62}[!-9;-~])?$"},
                                         "role": {"type": "string", "enum": list(ROLES)}}},
    "ConsoleUserRole": {"type": "object", "additionalProperties": False, "required": ["role"],
                        "properties": {"role": {"type": "string", "enum": list(ROLES)}}},
}

ROUTES = (
    Route("GET", "/console-users", list_users, "listConsoleUsers", "Console users (never passwords)", TAG,
          (Reply(200, "Users by name", "ConsoleUserList"),), query=PAGE),
    Route("POST", "/console-users", create_user, "createConsoleUser",
          "Create a console user (a generated password, shown once)", TAG,
          (Reply(201, "The user and its password, shown only here", "ConsoleUserCreated"),),
          body="ConsoleUserCreate", errors=(403, 409)),
    Route("POST", "/console-users/{username}/role", set_role, "setConsoleUserRole", "Change a console user's role",
          TAG, (Reply(200, "The user", "ConsoleUser"),), body="ConsoleUserRole", errors=(403, 404)),
    Route("DELETE", "/console-users/{username}", delete_user, "deleteConsoleUser",
          "Remove a console user (its sessions end)", TAG, (Reply(204, "Removed", None),), errors=(403, 404)),
)
