"""Admin routes for certificate profiles (read-only: profiles are files, loaded at start)."""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound
from ..web.keys import GATEWAY
from .inputs import QueryArgs, page_in_memory
from .spec import PAGE, Reply, Route
from .views import profile_view


async def list_profiles(request: web.Request) -> web.Response:
    q = QueryArgs(request)
    limit, offset = q.page()
    q.done()
    profiles = request.app[GATEWAY].profiles
    items = [profile_view(profiles[name]) for name in sorted(profiles)]
    return web.json_response(page_in_memory(items, limit, offset))


async def get_profile(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    name = request.match_info["name"]
    profile = request.app[GATEWAY].profiles.get(name)
    if profile is None:
        raise NotFound(f"unknown certificate profile {name!r}")
    return web.json_response(profile_view(profile))


ROUTES = (
    Route("GET", "/profiles", list_profiles, "listProfiles", "List certificate profiles", "Profiles",
          (Reply(200, "Profiles by name", "ProfileList"),), query=PAGE),
    Route("GET", "/profiles/{name}", get_profile, "getProfile", "One certificate profile", "Profiles",
          (Reply(200, "The profile", "Profile"),), errors=(404,)),
)
