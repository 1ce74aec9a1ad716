"""CAs, profiles, pending requests, end entities and the audit trail."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from urllib.parse import quote, urlencode

from aiohttp import web

from ..admin.roles import ROLE_TITLES, ROLES

from ..web.keys import GATEWAY
from .app import api, form, redirect, render

EVENT_FILTERS = ("type", "status", "protocol_config", "ca", "serial", "entity", "since")
EVENT_PAGE = 100
CSV_MAX_EVENTS = 100_000


def _int(value: str | None, default: int = 0) -> int:
    try:
        return max(0, int(value or default))
    except ValueError:
        return default


# --- CAs ----------------------------------------------------------------------------------
async def list_cas(request: web.Request) -> web.Response:
    items = (await api(request, "GET", "/cas")).body["items"]
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for ca in items:
        by_parent.setdefault(ca.get("parent"), []).append(ca)
    ids = {ca["id"] for ca in items}
    tree: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for ca in sorted(by_parent.get(parent, []), key=lambda c: c["name"]):
            tree.append((depth, ca))
            walk(ca["id"], depth + 1)

    walk(None, 0)
    for ca in items:  # a parent outside the listing (external): still shown
        if ca.get("parent") and ca["parent"] not in ids and all(ca is not c for _, c in tree):
            tree.append((0, ca))
    return render(request, "cas.html", {"tree": tree, "parents": [c for c in items if c.get("can_issue")]})


async def show_ca(request: web.Request) -> web.Response:
    ca_id = request.match_info["id"]
    ca = (await api(request, "GET", f"/cas/{ca_id}")).body
    config = request.app[GATEWAY].config
    urls = {"CRL": config.crl_url(ca_id), "OCSP": config.ocsp_url(ca_id)}
    return render(request, "ca.html", {"ca": ca, "urls": urls, "done": request.query.get("done")})


async def download_ca(request: web.Request) -> web.StreamResponse:
    ca_id, kind = request.match_info["id"], request.match_info["kind"]
    if kind == "crl":
        answer = await api(request, "GET", f"/cas/{ca_id}/crl")
        return web.Response(body=answer.body, content_type="application/pkix-crl",
                            headers={"Content-Disposition": f'attachment; filename="{ca_id}.crl"'})
    ca = (await api(request, "GET", f"/cas/{ca_id}")).body
    pem = ca["certificate_pem"] if kind == "certificate" else ca["chain_pem"]
    if not pem:
        raise web.HTTPNotFound(text="this CA has no certificate yet")
    return web.Response(body=pem.encode(), content_type="application/x-pem-file",
                        headers={"Content-Disposition": f'attachment; filename="{ca_id}-{kind}.pem"'})


async def force_crl(request: web.Request) -> web.StreamResponse:
    ca_id = request.match_info["id"]
    await api(request, "GET", f"/cas/{ca_id}/crl", query={"force": "true"})
    raise redirect(f"/console/cas/{ca_id}?done=crl")


async def create_ca(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    body: dict[str, Any] = {"kind": fields.get("kind", ""), "id": fields.get("id", ""),
                            "name": fields.get("name", "")}
    for name in ("key_algorithm", "organization", "parent", "certificate"):
        if fields.get(name):
            body[name] = fields[name]
    if fields.get("validity_days"):
        body["validity_days"] = _int(fields["validity_days"])
    created = (await api(request, "POST", "/cas", body=body)).body
    raise redirect(f"/console/cas/{created['id']}?done=created")


# --- profiles ------------------------------------------------------------------------------
async def list_profiles(request: web.Request) -> web.Response:
    items = (await api(request, "GET", "/profiles")).body["items"]
    return render(request, "profiles.html", {"items": items})


async def show_profile(request: web.Request) -> web.Response:
    profile = (await api(request, "GET", f"/profiles/{request.match_info['name']}")).body
    return render(request, "profile.html", {"profile": profile, "pretty": json.dumps(profile, indent=2)})


# --- pending requests ----------------------------------------------------------------------
async def list_requests(request: web.Request) -> web.Response:
    status = request.query.get("status", "pending")
    query = {"status": status} if status in ("pending", "approved", "rejected", "issued", "upstream") else {}
    items = (await api(request, "GET", "/requests", query={**query, "limit": "200"})).body["items"]
    return render(request, "requests.html", {"items": items, "status": status, "done": request.query.get("done")})


async def decide(request: web.Request) -> web.StreamResponse:
    request_id, action = request.match_info["id"], request.match_info["action"]
    fields = await form(request)
    body = {"reason": fields.get("reason", "")} if action == "reject" else {}
    await api(request, "POST", f"/requests/{request_id}/{action}", body=body)
    raise redirect(f"/console/requests?done={action}")


# --- end entities ----------------------------------------------------------------------------
async def list_entities(request: web.Request) -> web.Response:
    query = {k: request.query[k] for k in ("status", "protocol_config") if request.query.get(k)}
    offset = _int(request.query.get("offset"))
    body = (await api(request, "GET", "/end-entities", query={**query, "limit": "100", "offset": str(offset)})).body
    return render(request, "entities.html", {"items": body["items"], "filters": query, "offset": offset,
                                             "done": request.query.get("done")})


async def set_entity_status(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    await api(request, "POST", f"/end-entities/{request.match_info['id']}/status",
              body={"status": fields.get("status", "")})
    raise redirect("/console/entities?done=status")


# --- events ------------------------------------------------------------------------------------
def _event_filters(source: Any) -> dict[str, str]:
    return {k: str(source[k]).strip() for k in EVENT_FILTERS if str(source.get(k) or "").strip()}


async def list_events(request: web.Request) -> web.Response:
    filters = _event_filters(request.query)
    offset = _int(request.query.get("offset"))
    body = (await api(request, "GET", "/events", query={**filters, "limit": str(EVENT_PAGE),
                                                        "offset": str(offset)})).body
    return render(request, "events.html", {"items": body["items"], "filters": filters, "offset": offset,
                                           "more": body.get("more", False), "page_size": EVENT_PAGE,
                                           "query": urlencode(filters)})


async def export_events(request: web.Request) -> web.StreamResponse:
    filters = _event_filters(request.query)
    await api(request, "GET", "/events", query={**filters, "limit": "1"})  # refused early, as a page
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": 'attachment; filename="events.csv"'})
    await response.prepare(request)
    columns = ("id", "created_at", "type", "status", "actor", "protocol_config", "ca", "serial", "entity", "detail")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    offset = 0
    while offset < CSV_MAX_EVENTS:
        body = (await api(request, "GET", "/events", query={**filters, "limit": "500", "offset": str(offset)})).body
        for item in body["items"]:
            detail = dict(item.get("detail") or {})
            writer.writerow([item.get("id"), item.get("created_at"), item.get("type"), item.get("status"),
                             detail.pop("actor", ""), item.get("protocol_config") or "", item.get("ca") or "",
                             item.get("serial") or "", item.get("entity") or "",
                             json.dumps(detail, sort_keys=True)])
        await response.write(buf.getvalue().encode())
        buf.seek(0)
        buf.truncate()
        if not body.get("more"):
            break
        offset += len(body["items"])
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/cas", list_cas)
    app.router.add_post("/cas", create_ca)
    app.router.add_get("/cas/{id}", show_ca)
    app.router.add_get("/cas/{id}/download/{kind:certificate|chain|crl}", download_ca)
    app.router.add_post("/cas/{id}/crl", force_crl)
    app.router.add_get("/profiles", list_profiles)
    app.router.add_get("/profiles/{name}", show_profile)
    app.router.add_get("/requests", list_requests)
    app.router.add_post("/requests/{id}/{action:approve|reject}", decide)
    app.router.add_get("/entities", list_entities)
    app.router.add_post("/entities/{id}/status", set_entity_status)
    app.router.add_get("/events", list_events)
    app.router.add_get("/events.csv", export_events)
    app.router.add_get("/users", list_users)
    app.router.add_post("/users", create_user)
    app.router.add_post("/users/{username}", change_user)
    app.router.add_post("/api-keys", create_api_key)
    app.router.add_post("/api-keys/{name}/revoke", revoke_api_key)


# --- console users (Owners) ----------------------------------------------------------------------
async def list_users(request: web.Request, *, created: dict[str, Any] | None = None,
                     created_key: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    items = (await api(request, "GET", "/console-users")).body["items"]
    keys = (await api(request, "GET", "/api-keys", query={"limit": "500"})).body["items"]
    return render(request, "users.html", {"items": items, "keys": keys, "roles": [(r, ROLE_TITLES[r]) for r in ROLES],
                                          "created": created, "done": request.query.get("done"),
                                          "created_key": created_key}, status=status)


async def create_user(request: web.Request) -> web.Response:
    fields = await form(request)
    created = (await api(request, "POST", "/console-users",
                         body={"username": fields.get("username", "").strip(), "role": fields.get("role", "")})).body
    return await list_users(request, created=created, status=201)


async def create_api_key(request: web.Request) -> web.Response:
    fields = await form(request)
    body = {"name": fields.get("name", "").strip(), "role": fields.get("role", "")}
    if fields.get("expires_in", "").strip():
        body["expires_in"] = fields["expires_in"].strip()
    created = (await api(request, "POST", "/api-keys", body=body)).body
    return await list_users(request, created_key=created, status=201)


async def revoke_api_key(request: web.Request) -> web.StreamResponse:
    await api(request, "POST", f"/api-keys/{quote(request.match_info['name'], safe='')}/revoke", body={})
    raise redirect("/console/users?done=saved")


async def change_user(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    name = request.match_info["username"]
    if fields.get("action") == "remove":
        await api(request, "DELETE", f"/console-users/{quote(name, safe='')}")
    else:
        await api(request, "POST", f"/console-users/{quote(name, safe='')}/role", body={"role": fields.get("role", "")})
    raise redirect("/console/users?done=saved")
