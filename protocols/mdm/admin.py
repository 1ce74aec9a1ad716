"""Admin API of the MDM web service under ``/admin/mdm``: configurations (create, show with
the URLs an MDM administrator enters), digital IDs and credentials (the password shown
once), as ``gateway mdm`` manages them (:mod:`.manage`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway.admin import openapi
from gateway.admin.api import extend
from gateway.admin.auth import actor
from gateway.admin.inputs import Fields, QueryArgs, read_json
from gateway.admin.spec import Reply, Route
from gateway.door import CredentialInfo, Door, default_issuing_ca, door
from gateway.keys import KEY_ALGORITHMS

from . import profiles
from .manage import (
    CONFIG_ID,
    add_credential, add_digital_id, create_configuration, describe_with, mdm_configuration, remove_credential,
    remove_digital_id, reset_password, unlock_credential,
)
from .platforms import PLATFORMS
from .service import PROTOCOL
from .settings import DIGITAL_ID_NAME, PKCS12_ENCRYPTIONS
from .users import USERNAME

TAG = "MDM"


def _door(request: web.Request) -> Door:
    return door(request, PROTOCOL)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def credential_view(c: CredentialInfo, now: dt.datetime) -> dict[str, Any]:
    return {"username": c.username, "disabled": c.disabled, "locked": c.locked(now), "failures": c.failures,
            "created_at": _iso(c.created_at), "last_used_at": _iso(c.last_used_at)}


async def create_config(request: web.Request) -> web.Response:
    d = _door(request)
    f = Fields(await read_json(request))
    config_id = f.required_text("id")
    platform = f.required_text("platform")
    ca = f.text("ca") or default_issuing_ca()
    scep_config = f.text("scep_config")
    scep = f.flag("scep", default=True)
    f.done()
    rec = await create_configuration(d, config_id, ca, platform, actor=actor(request), scep_config=scep_config,
                                     provision_scep=bool(scep))
    return web.json_response(await describe_with(d, rec), status=201)


async def show_config(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec, _ = await mdm_configuration(d, request.match_info["id"])
    return web.json_response(await describe_with(d, rec))


async def list_digital_ids(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec, _ = await mdm_configuration(d, request.match_info["id"])
    return web.json_response({"items": (await describe_with(d, rec))["digital_ids"]})


async def create_digital_id(request: web.Request) -> web.Response:
    d = _door(request)
    f = Fields(await read_json(request))
    name = f.required_text("name")
    ca = f.text("ca")
    spec: dict[str, Any] = {"profile": f.required_text("profile"), "rdn_format": f.required_text("rdn_format"),
                            "parent_dn": f.text("parent_dn") or ""}
    for key in ("key_algorithm", "pkcs12_encryption", "description"):
        value = f.text(key)
        if value is not None:
            spec[key] = value
    f.done()
    await add_digital_id(d, request.match_info["id"], name, spec, actor=actor(request), ca_id=ca)
    rec, _ = await mdm_configuration(d, request.match_info["id"])
    view = next(v for v in (await describe_with(d, rec))["digital_ids"] if v["name"] == name)
    return web.json_response(view, status=201)


async def delete_digital_id(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    await remove_digital_id(d, request.match_info["id"], request.match_info["name"], actor=actor(request))
    return web.Response(status=204)


async def list_credentials(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    rec, _ = await mdm_configuration(d, request.match_info["id"])
    now = d.clock()
    return web.json_response({"items": [credential_view(c, now) for c in await d.credentials.list(rec.id, kind="user")]})


async def create_credential(request: web.Request) -> web.Response:
    d = _door(request)
    f = Fields(await read_json(request))
    username = f.required_text("username")
    password = f.text("password")
    f.done()
    issued = await add_credential(d, request.match_info["id"], username, actor=actor(request), password=password)
    body = {**credential_view(issued.credential, d.clock()), "password": issued.secret}
    return web.json_response(body, status=201, headers={"Cache-Control": "no-store"})


async def delete_credential(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    await remove_credential(d, request.match_info["id"], request.match_info["username"], actor=actor(request))
    return web.Response(status=204)


async def unlock(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    info = await unlock_credential(d, request.match_info["id"], request.match_info["username"],
                                   actor=actor(request))
    return web.json_response(credential_view(info, d.clock()))


async def new_password(request: web.Request) -> web.Response:
    d = _door(request)
    QueryArgs(request).done()
    config_id, username = request.match_info["id"], request.match_info["username"]
    password = await reset_password(d, config_id, username, actor=actor(request))
    rec, _ = await mdm_configuration(d, config_id)
    found = await d.credentials.find_user(rec.id, username)
    assert found is not None
    return web.json_response({**credential_view(found, d.clock()), "password": password},
                             headers={"Cache-Control": "no-store"})


ROUTES: tuple[Route, ...] = (
    Route("POST", "/mdm", create_config, "createMdmConfiguration",
          "Create an MDM configuration offering every mdmws profile (and, unless scep is false or scep_config "
          "names one, its SCEP configuration <id>-scep)", TAG,
          (Reply(201, "The configuration with its URLs", "MdmConfiguration"),), body="MdmConfigurationCreate",
          errors=(404, 409)),
    Route("GET", "/mdm/{id}", show_config, "getMdmConfiguration",
          "An MDM configuration with the Web Service URL, WSDL, SCEP URL and digital IDs", TAG,
          (Reply(200, "The configuration", "MdmConfiguration"),), errors=(404,)),
    Route("GET", "/mdm/{id}/digital-ids", list_digital_ids, "listMdmDigitalIds",
          "Digital IDs with their Web Service URL and SCEP URL", TAG,
          (Reply(200, "Digital IDs", "MdmDigitalIdList"),), errors=(404,)),
    Route("POST", "/mdm/{id}/digital-ids", create_digital_id, "createMdmDigitalId",
          "Add a digital ID: an mdmws profile, an RDN format with variables, a parent DN", TAG,
          (Reply(201, "The digital ID", "MdmDigitalId"),), body="MdmDigitalIdCreate", errors=(404, 409)),
    Route("DELETE", "/mdm/{id}/digital-ids/{name}", delete_digital_id, "deleteMdmDigitalId",
          "Remove a digital ID (certificates issued under it stay valid)", TAG, (Reply(204, "Removed"),),
          errors=(404,)),
    Route("GET", "/mdm/{id}/credentials", list_credentials, "listMdmCredentials",
          "Credentials the MDM authenticates with (never their passwords)", TAG,
          (Reply(200, "Credentials", "MdmCredentialList"),), errors=(404,)),
    Route("POST", "/mdm/{id}/credentials", create_credential, "createMdmCredential",
          "Add a credential; its password (generated unless given) is shown once", TAG,
          (Reply(201, "The credential and its password, shown once", "MdmCredentialCreated"),),
          body="MdmCredentialCreate", errors=(404, 409)),
    Route("DELETE", "/mdm/{id}/credentials/{username}", delete_credential, "deleteMdmCredential",
          "Delete a credential", TAG, (Reply(204, "Deleted"),), errors=(404,)),
    Route("POST", "/mdm/{id}/credentials/{username}/unlock", unlock, "unlockMdmCredential",
          "End a credential's lockout now (as `gateway mdm credential unlock`)", TAG,
          (Reply(200, "The credential", "MdmCredential"),), errors=(404,)),
    Route("POST", "/mdm/{id}/credentials/{username}/password", new_password, "resetMdmCredentialPassword",
          "Give a credential a new generated password, shown once (the old one stops working; lockout cleared)",
          TAG, (Reply(200, "The credential and its new password, shown once", "MdmCredentialCreated"),),
          errors=(404,)),
)

_S = {"type": "string"}
_NS = {"type": ["string", "null"]}
_DT = {"type": "string", "format": "date-time"}
_NDT = {"type": ["string", "null"], "format": "date-time"}
USERNAME_SCHEMA = {"type": "string", "pattern": USERNAME.pattern,
                   "description": "2-18 characters: lower-case letters, digits, - and _"}
NAME_SCHEMA = {"type": "string", "pattern": DIGITAL_ID_NAME.pattern}
_DID = {"name": _S, "ca": _S, "profile": _S, "rdn_format": _S, "parent_dn": _S,
        "variables": {"type": "array", "items": _S}, "key_algorithm": _S, "pkcs12_encryption": _S,
        "server_key_generation": {"type": "boolean"}, "description": _S, "web_service_url": _S, "scep_url": _NS}
_CRED = {"username": _S, "disabled": {"type": "boolean"}, "locked": {"type": "boolean"},
         "failures": {"type": "integer"}, "created_at": _DT, "last_used_at": _NDT}
_CONFIG = {"config": _S, "platform": _S, "platform_name": _S, "ca": _S, "enabled": {"type": "boolean"},
           "web_service_url": _S, "wsdl": _S, "scep_config": _NS, "scep_url": _NS,
           "digital_ids": {"type": "array", "items": openapi.ref("MdmDigitalId")}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "MdmConfigurationCreate": openapi.object_schema(
        {"id": {"type": "string", "pattern": CONFIG_ID.pattern},
         "platform": {"type": "string", "enum": list(PLATFORMS)},
         "ca": {"type": "string", "description": "Issuing CA id (default: the dev issuing CA)"},
         "scep_config": {"type": "string", "description": "Hand out challenges of this SCEP configuration"},
         "scep": {"type": "boolean", "description": "false: no SCEP challenges (default true)"}},
        ["id", "platform"], closed=True),
    "MdmConfiguration": openapi.object_schema(_CONFIG, list(_CONFIG)),
    "MdmDigitalIdCreate": openapi.object_schema(
        {"name": NAME_SCHEMA, "profile": {"type": "string", "enum": list(profiles.NAMES)},
         "rdn_format": {"type": "string", "description": "e.g. CN=<deviceName>,OU=<igusername>"},
         "parent_dn": {"type": "string", "description": "RFC 4514, appended to the RDN format's result"},
         "ca": {"type": "string", "description": "Must be the configuration's CA"},
         "key_algorithm": {"type": "string", "enum": list(KEY_ALGORITHMS)}, "pkcs12_encryption": {"type": "string", "enum": list(PKCS12_ENCRYPTIONS)},
         "description": {"type": "string", "maxLength": 255}},
        ["name", "profile", "rdn_format"], closed=True),
    "MdmDigitalId": openapi.object_schema(_DID, list(_DID)),
    "MdmDigitalIdList": openapi.object_schema({"items": {"type": "array", "items": openapi.ref("MdmDigitalId")}},
                                              ["items"]),
    "MdmCredentialCreate": openapi.object_schema(
        {"username": USERNAME_SCHEMA,
         "password": {"type": "string", "minLength": 8, "maxLength": 1024, "description": "Omit to generate one"}},
        ["username"], closed=True),
    "MdmCredential": openapi.object_schema(_CRED, list(_CRED)),
    "MdmCredentialCreated": openapi.object_schema({**_CRED, "password": _S}, [*_CRED, "password"]),
    "MdmCredentialList": openapi.object_schema({"items": {"type": "array", "items": openapi.ref("MdmCredential")}},
                                               ["items"]),
}


def mount_admin(admin: web.Application) -> None:
    extend(admin, ROUTES, SCHEMAS, TAG, path_schemas={"username": USERNAME_SCHEMA, "name": NAME_SCHEMA})
