"""Protocol configurations: list, create, edit, the URLs clients need, and credentials
(EAB keys, SCEP challenges, MDM credentials, Windows users) whose secret is shown once:
in the answer to the POST that made it, never in a URL, a redirect or a later page."""

from __future__ import annotations

import json
from typing import Any

from urllib.parse import quote

from aiohttp import web

from ..web.keys import GATEWAY
from .app import api, form, redirect, render

# protocol -> (admin path of its credentials, what one is called, the field its secret comes back in)
CREDENTIALS: dict[str, tuple[str, str, str]] = {
    "acme": ("/acme/{id}/eab-keys", "EAB key", "hmac_key"),
    "scep": ("/scep/{id}/challenges", "one-time challenge", "challenge"),
    "mdm": ("/mdm/{id}/credentials", "MDM credential", "password"),
    "windows": ("/windows/{id}/users", "user", "password"),
    "est": ("/est/{id}/users", "EST user", "password"),
}


async def client_urls(request: web.Request, config_id: str) -> list[tuple[str, str]]:
    """(label, URL) of every URL a client of this configuration is given, as ``gateway info``
    lists them (read after the admin API let this user read the configuration)."""
    from ..composition import adapters

    gw = request.app[GATEWAY]
    async with gw.store.read() as q:
        rec = await q.configs.get(config_id)
    found: list[tuple[str, str]] = []
    if rec is None:
        return found

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            found.append((prefix or "url", value))
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix} {key}".strip(), inner)

    for adapter in adapters():
        if adapter.name == rec.protocol:
            for entry in adapter.describe(gw.config, [rec], {}):
                walk("", {k: v for k, v in entry.items() if k != "digital_ids"})
    return found


async def list_configs(request: web.Request) -> web.Response:
    items = (await api(request, "GET", "/protocol-configs", query={"limit": "500"})).body["items"]
    cas = await api(request, "GET", "/cas", allow=(403,))
    profiles = await api(request, "GET", "/profiles", allow=(403,))
    return render(request, "configs.html", {
        "items": items, "protocols": sorted({"acme", "scep", "est", "windows", "mdm"} | {c["protocol"] for c in items}),
        "cas": cas.body.get("items", []) if cas.ok else [],
        "profiles": profiles.body.get("items", []) if profiles.ok else []})


async def _page(request: web.Request, config_id: str, *, secret: dict[str, Any] | None = None,
                error: str | None = None, status: int = 200) -> web.Response:
    config = (await api(request, "GET", f"/protocol-configs/{config_id}")).body
    credentials: list[dict[str, Any]] = []
    kind = CREDENTIALS.get(config["protocol"])
    if kind is not None:
        listed = await api(request, "GET", kind[0].format(id=config_id), allow=(403, 404))
        if listed.ok:
            credentials = listed.body.get("items", [])
    return render(request, "config.html", {
        "config": config, "urls": await client_urls(request, config_id), "credentials": credentials,
        "credential_kind": kind[1] if kind else None, "secret": secret, "error": error,
        "settings_json": json.dumps(config["settings"], indent=2, sort_keys=True),
        "done": request.query.get("done")}, status=status)


async def show_config(request: web.Request) -> web.Response:
    return await _page(request, request.match_info["id"])


async def create_config(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    profiles = [p.strip() for p in fields.get("profiles", "").split(",") if p.strip()]
    body: dict[str, Any] = {"id": fields.get("id", ""), "protocol": fields.get("protocol", ""),
                            "ca": fields.get("ca", ""), "profiles": profiles}
    if fields.get("approval") in ("auto", "manual"):
        body["settings"] = {"approval": fields["approval"]}
    created = (await api(request, "POST", "/protocol-configs", body=body)).body
    raise redirect(f"/console/configs/{created['id']}?done=created")


async def edit_config(request: web.Request) -> web.StreamResponse:
    config_id = request.match_info["id"]
    fields = await form(request)
    body: dict[str, Any] = {"enabled": fields.get("enabled") == "on"}
    if fields.get("approval") in ("auto", "manual"):
        body["settings"] = {"approval": fields["approval"]}
    if fields.get("profiles", "").strip():
        body["profiles"] = [p.strip() for p in fields["profiles"].split(",") if p.strip()]
        if fields.get("default_profile", "").strip():
            body["default_profile"] = fields["default_profile"].strip()
    await api(request, "PATCH", f"/protocol-configs/{config_id}", body=body)
    raise redirect(f"/console/configs/{config_id}?done=saved")


async def create_credential(request: web.Request) -> web.Response:
    config_id = request.match_info["id"]
    config = (await api(request, "GET", f"/protocol-configs/{config_id}")).body
    kind = CREDENTIALS.get(config["protocol"])
    if kind is None:
        raise web.HTTPNotFound(text="this protocol has no credentials to create here")
    fields = await form(request)
    if config["protocol"] == "scep" and fields.get("kind") == "challenge-admin":
        username = fields.get("username", "").strip()
        answer = await api(request, "PUT", f"/scep/{config_id}/challenge-admins/{quote(username, safe='')}",
                           body={}, allow=(400, 404, 409))
        if not answer.ok:
            return await _page(request, config_id, error=answer.error, status=answer.status)
        return await _page(request, config_id, status=201, secret={
            "kind": "NDES challenge admin (signs in at mscep_admin to get one-time challenges)",
            "secret": answer.body.get("password"), "fields": {"username": answer.body.get("username")}})
    body: dict[str, Any] = {}
    if config["protocol"] == "acme" and fields.get("label"):
        body["label"] = fields["label"]
    if config["protocol"] == "scep" and fields.get("subject"):
        body["subject"] = fields["subject"]
    if config["protocol"] in ("mdm", "windows", "est"):
        body["username"] = fields.get("username", "")
    answer = await api(request, "POST", kind[0].format(id=config_id), body=body, allow=(400, 409))
    if not answer.ok:
        return await _page(request, config_id, error=answer.error, status=answer.status)
    created = answer.body
    shown = {"kind": kind[1], "secret": created.get(kind[2]), "fields": {
        k: v for k, v in created.items() if k != kind[2] and isinstance(v, (str, int)) and v != ""}}
    return await _page(request, config_id, secret=shown, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/configs", list_configs)
    app.router.add_post("/configs", create_config)
    app.router.add_get("/configs/{id}", show_config)
    app.router.add_post("/configs/{id}", edit_config)
    app.router.add_post("/configs/{id}/credentials", create_credential)
