"""Admin routes for protocol configurations (which CA and profiles a protocol endpoint uses)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..composition import protocol_names
from ..errors import BadRequest, NotFound
from ..store.records import ProtocolConfigRecord
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, page_in_memory, read_json
from .spec import PAGE, Query, Reply, Route
from .views import config_view


async def _config(request: web.Request) -> ProtocolConfigRecord:
    config_id = request.match_info["id"]
    async with request.app[GATEWAY].store.read() as q:
        rec = await q.configs.get(config_id)
    if rec is None:
        raise NotFound(f"no protocol configuration {config_id!r}")
    return rec


async def list_configs(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    protocol = args.text("protocol", choices=protocol_names())
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        records = await q.configs.list(protocol)
    return web.json_response(page_in_memory([config_view(r) for r in records], limit, offset))


async def get_config(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    return web.json_response(config_view(await _config(request)))


async def create_config(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request))
    config_id = f.required_text("id")
    protocol = f.required_text("protocol", choices=protocol_names())
    ca_id = f.required_text("ca")
    profiles = f.text_list("profiles", required=True)
    default_profile = f.text("default_profile")
    settings = f.mapping("settings")
    f.done()
    assert profiles is not None
    rec = await gw.authority.create_config(config_id, protocol, ca_id, profiles, default_profile, settings,
                                           actor=actor(request))
    return web.json_response(config_view(rec), status=201)


def _merged_settings(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) of the settings object, one level deep: null removes a key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if merged.get("approval", "auto") not in ("auto", "manual"):
        raise BadRequest("settings.approval must be 'auto' or 'manual'")
    return merged


async def update_config(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rec = await _config(request)
    f = Fields(await read_json(request))
    enabled = f.flag("enabled")
    settings = f.mapping("settings")
    profiles = f.text_list("profiles")
    default_profile = f.text("default_profile")
    f.done()
    changes: dict[str, Any] = {}
    if enabled is not None:
        changes["enabled"] = enabled
    if settings is not None:
        changes["settings"] = _merged_settings(rec.settings, settings)
    if profiles is not None:
        if not profiles:
            raise BadRequest("a protocol configuration needs at least one profile")
        unknown = [p for p in profiles if p not in gw.profiles]
        if unknown:
            raise BadRequest(f"unknown certificate profile(s): {', '.join(unknown)}")
        changes["profiles"] = list(dict.fromkeys(profiles))
    offered = changes.get("profiles", rec.profiles)
    if default_profile is not None:
        if default_profile not in offered:
            raise BadRequest("default_profile must be one of the configuration's profiles")
        changes["default_profile"] = default_profile
    elif rec.default_profile not in offered:
        raise BadRequest(
            f"the current default profile {rec.default_profile!r} would no longer be offered; "
            "give a new default_profile"
        )
    if changes:
        async with gw.store.transaction() as q:
            await q.configs.update(rec.id, **changes)
        await gw.authority.events.record(
            "config_update", "success", protocol_config=rec.id, ca_id=rec.ca_id,
            actor=actor(request), fields=sorted(changes),
        )
    return web.json_response(config_view(await _config(request)))


async def delete_config(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rec = await _config(request)
    async with gw.store.transaction() as q:
        deleted = await q.configs.delete(rec.id)
    if not deleted:
        raise NotFound(f"no protocol configuration {rec.id!r}")
    await gw.authority.events.record(
        "config_delete", "success", protocol_config=rec.id, ca_id=rec.ca_id, actor=actor(request)
    )
    return web.Response(status=204)


ROUTES = (
    Route("GET", "/protocol-configs", list_configs, "listProtocolConfigs", "List protocol configurations",
          "Protocol configurations", (Reply(200, "Configurations by id", "ProtocolConfigList"),),
          query=(*PAGE, Query("protocol", {"type": "string", "enum": list(protocol_names())},
                              "Only configurations of this protocol."))),
    Route("GET", "/protocol-configs/{id}", get_config, "getProtocolConfig", "One protocol configuration",
          "Protocol configurations", (Reply(200, "The configuration", "ProtocolConfig"),), errors=(404,)),
    Route("POST", "/protocol-configs", create_config, "createProtocolConfig",
          "Create a protocol configuration", "Protocol configurations",
          (Reply(201, "The new configuration", "ProtocolConfig"),),
          body="ProtocolConfigCreate", errors=(404, 409, 503)),
    Route("PATCH", "/protocol-configs/{id}", update_config, "updateProtocolConfig",
          "Enable/disable a configuration, merge its settings (null removes a key), change its profiles",
          "Protocol configurations", (Reply(200, "The updated configuration", "ProtocolConfig"),),
          body="ProtocolConfigUpdate", errors=(404,)),
    Route("DELETE", "/protocol-configs/{id}", delete_config, "deleteProtocolConfig",
          "Delete a protocol configuration (its certificates and events are kept)",
          "Protocol configurations", (Reply(204, "Deleted"),), errors=(404,)),
)
