"""Sign-in, sign-out and the dashboard."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ..admin.auth import peer_certificate
from ..credentials import LockedOut
from ..errors import Unauthorized
from ..events import EventRecorder
from ..web.keys import GATEWAY
from .app import (COOKIE, LOGIN_COOKIE, SESSION, SESSIONS, TOKEN, USERS, api, form, login_token, redirect, render,
                  set_login_cookie, set_session_cookie)
from .charts import bar_chart

log = logging.getLogger("gateway.console")


def _next(value: str | None) -> str:
    target = unquote(value or "")
    return target if target.startswith("/console/") and not target.startswith("//") else "/console/"


async def login_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    token = login_token(request)
    expired = request.query.get("expired") == "1"
    response = render(request, "login.html", {
        "login_csrf": token, "error": error, "next": _next(request.query.get("next")),
        "notice": "Your session timed out: sign in again." if expired and error is None else None,
        "has_certificate": peer_certificate(request) is not None,
    }, status=status)
    set_login_cookie(response, token)
    return response


async def _audit(request: web.Request, status: str, username: str, how: str, detail: str | None = None) -> None:
    await EventRecorder(request.app[GATEWAY].store).record(
        "console_login", status, actor=f"console:{username}" if status == "success" else None, username=username,
        method=how, remote=request.remote, detail=detail)


async def _signed_in(request: web.Request, username: str, next_path: str) -> web.HTTPSeeOther:
    token, _csrf = await request.app[SESSIONS].start(username)
    response = redirect(next_path)
    set_session_cookie(response, token)
    response.del_cookie(LOGIN_COOKIE, path="/")
    return response


def _login_csrf_ok(request: web.Request, fields: dict[str, str]) -> bool:
    cookie, field = request.cookies.get(LOGIN_COOKIE), fields.get("login_csrf")
    return bool(cookie and field and hmac.compare_digest(cookie.encode(), field.encode()))


async def login(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    if not _login_csrf_ok(request, fields):
        return await login_page(request, error="The sign-in form expired: try again.", status=403)
    username = fields.get("username", "").strip()
    try:
        user = await request.app[USERS].login(username, fields.get("password", ""))
    except LockedOut:
        await _audit(request, "failure", username, "password", "locked out")
        return await login_page(request, error="Too many failed attempts: try again later.", status=429)
    except Unauthorized:
        await _audit(request, "failure", username, "password", "wrong user name or password")
        return await login_page(request, error="Wrong user name or password.", status=401)
    await _audit(request, "success", user.username, "password")
    raise await _signed_in(request, user.username, _next(fields.get("next")))


async def login_certificate(request: web.Request) -> web.StreamResponse:
    fields = await form(request)
    if not _login_csrf_ok(request, fields):
        return await login_page(request, error="The sign-in form expired: try again.", status=403)
    der = peer_certificate(request)
    if der is None:
        return await login_page(request, error="Your browser sent no client certificate.", status=401)
    try:
        user = await request.app[USERS].by_certificate(der)
    except Unauthorized as exc:
        await _audit(request, "failure", "", "certificate", exc.detail)
        return await login_page(request, error="This certificate is not registered for a console user.",
                                status=401)
    await _audit(request, "success", user.username, "certificate")
    raise await _signed_in(request, user.username, _next(fields.get("next")))


async def logout(request: web.Request) -> web.StreamResponse:
    await request.app[SESSIONS].end(request[TOKEN])
    username = request[SESSION].username
    await EventRecorder(request.app[GATEWAY].store).record("console_logout", "success", actor=f"console:{username}",
                                                           username=username)
    response = redirect("/console/login")
    response.del_cookie(COOKIE, path="/")
    return response


COLOURS = {"issued": "#2f7d32", "pending": "#b26a00", "refused": "#b3261e", "revoked": "#5b5b5b"}


async def dashboard(request: web.Request) -> web.Response:
    stats = (await api(request, "GET", "/statistics", query={"days": "14"})).body
    configs = await api(request, "GET", "/protocol-configs", query={"limit": "500"}, allow=(403,))
    protocol_of = {c["id"]: c["protocol"] for c in (configs.body.get("items", []) if configs.ok else [])}
    since = dt.date.fromisoformat(stats["since"][:10])
    days = [(since + dt.timedelta(days=i)).isoformat() for i in range(stats["days"])]
    totals: dict[str, dict[str, int]] = {o: {d: 0 for d in days} for o in COLOURS}
    table: dict[tuple[str, str], dict[str, int]] = {}
    for row in stats["series"]:
        if row["day"] in totals[row["outcome"]]:
            totals[row["outcome"]][row["day"]] += row["count"]
        config = row["protocol_config"] or "(admin API / CLI)"
        key = (protocol_of.get(row["protocol_config"] or "", "-"), config)
        table.setdefault(key, {o: 0 for o in COLOURS})[row["outcome"]] += row["count"]
    charts = [{"outcome": o, "total": sum(totals[o].values()),
               "svg": bar_chart([(d[5:], totals[o][d]) for d in days], COLOURS[o], f"{o} per day")}
              for o in COLOURS]
    rows: list[dict[str, Any]] = [{"protocol": p, "config": c, **counts} for (p, c), counts in sorted(table.items())]
    return render(request, "dashboard.html", {"stats": stats, "charts": charts, "rows": rows})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/login/certificate", login_certificate)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", dashboard)
