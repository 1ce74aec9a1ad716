"""The ``/console/`` sub-app: sign-in, sessions, CSRF, security headers, page routes.

Every page goes through two middlewares. ``headers_middleware`` sets the security
headers on every answer (CSP without inline script or style, frame-ancestors none,
HSTS: the console is on the HTTPS listener only) and turns admin-API refusals into
an error page. ``session_middleware`` finds the session from its cookie (sign-in
pages and static files excepted), sends a browser without one to the sign-in page,
and refuses any POST whose ``csrf`` field is not the session's token (403).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..admin.roles import ROLE_TITLES, may, may_write
from ..errors import HTTP_STATUS, GatewayError, Unauthorized
from ..runtime import Gateway
from ..web.keys import GATEWAY
from .internal import Answer, InternalAdmin
from .sessions import Session, Sessions, sessions_for
from .users import ConsoleUsers

log = logging.getLogger("gateway.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "__Host-gateway-console"
LOGIN_COOKIE = "__Host-gateway-console-login"
HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
}
PUBLIC_PATHS = frozenset({"/console/login", "/console/login/certificate"})

ADMIN = web.AppKey("console_admin", InternalAdmin)
USERS = web.AppKey("console_users", ConsoleUsers)
SESSIONS = web.AppKey("console_sessions", Sessions)
SESSION = web.RequestKey("console_session", Session)
TOKEN = web.RequestKey("console_token", str)

NAV: tuple[tuple[str, str, str], ...] = (
    ("Dashboard", "/console/", "events"),
    ("CAs", "/console/cas", "cas"),
    ("Profiles", "/console/profiles", "profiles"),
    ("Protocols", "/console/configs", "protocols"),
    ("Certificates", "/console/certificates", "certificates"),
    ("Pending", "/console/requests", "requests"),
    ("End entities", "/console/entities", "entities"),
    ("Events", "/console/events", "events"),
    ("Users", "/console/users", "access"),
)


class Refused(Exception):
    """The admin API said no: shown as an error page with the API's status and detail."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.error)
        self.answer = answer


async def api(request: web.Request, method: str, path: str, *, query: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None, allow: tuple[int, ...] = ()) -> Answer:
    """Call the admin API as the signed-in user; a refusal (not in ``allow``) raises :class:`Refused`."""
    answer = await request.app[ADMIN].call(request[TOKEN], method, path, query=query, body=body)
    if not answer.ok and answer.status not in allow:
        raise Refused(answer)
    return answer


async def form(request: web.Request) -> dict[str, str]:
    """The POSTed form as text fields (files are not taken)."""
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    session = request.get(SESSION)
    base: dict[str, Any] = {"session": session, "nav": [], "csrf": session.csrf if session else None,
                            "role_title": ROLE_TITLES.get(session.role, session.role) if session else None,
                            "path": request.path, "done": None, "error": None}
    if session is not None:
        base["nav"] = [(title, href) for title, href, area in NAV if may(session.role, area, "GET")]
        role = session.role
        base["can"] = lambda area: may_write(role, area)
        base["can_read"] = lambda area: may(role, area, "GET")
    else:
        base["can"] = base["can_read"] = lambda area: False
    base.update(context)
    return aiohttp_jinja2.render_template(template, request, base, status=status)


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Refused as exc:
        response = render(request, "error.html", {"status": exc.answer.status, "detail": exc.answer.error},
                          status=exc.answer.status if exc.answer.status >= 400 else 502)
    except web.HTTPException as exc:  # redirects, 403 before a session, 404, 405
        exc.headers.update(SECURITY_HEADERS)
        raise
    except GatewayError as exc:
        log.info("console %s %s refused: %s", request.method, request.path, exc.detail)
        response = render(request, "error.html", {"status": HTTP_STATUS[exc.kind], "detail": exc.detail},
                          status=HTTP_STATUS[exc.kind])
    except Exception:
        log.exception("console: unhandled error on %s %s", request.method, request.path)
        response = web.Response(status=500, text="internal error: the gateway's log has the details")
    response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith("/console/static/"):
        return await handler(request)
    token = request.cookies.get(COOKIE)
    try:
        session = await request.app[SESSIONS].find(token)
    except Unauthorized as exc:
        if request.method == "GET":
            target = "/console/login?next=" + _safe_next(request.path_qs)
            if "timed out" in exc.detail:
                target += "&expired=1"
            raise redirect(target) from None
        raise web.HTTPForbidden(text="not signed in: sign in again") from None
    request[SESSION] = session
    request[TOKEN] = token or ""
    if request.method == "POST":
        fields = await form(request)
        if not session.csrf_ok(fields.get("csrf")):
            log.warning("console: CSRF token missing or wrong on POST %s by %s", request.path, session.username)
            return render(request, "error.html", {"status": 403, "detail": "the form's CSRF token is missing or wrong: "
                                                  "reload the page and try again"}, status=403)
    return await handler(request)


def _safe_next(target: str) -> str:
    """Only console paths (no scheme, host or ``//``): the sign-in page never redirects away."""
    return quote(target if target.startswith("/console/") and not target.startswith("//") else "/console/", safe="")


def login_token(request: web.Request) -> str:
    """The sign-in form's CSRF token (double-submit: a cookie and a hidden field)."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def set_login_cookie(response: web.StreamResponse, token: str) -> None:
    response.set_cookie(LOGIN_COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/", max_age=3600)


def set_session_cookie(response: web.StreamResponse, token: str) -> None:
    response.set_cookie(COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/")


def create_console_app(gateway: Gateway) -> web.Application:
    """The console sub-app; mount at ``/console/`` on the HTTPS application."""
    from . import pages_certificates, pages_configs, pages_home, pages_ops

    app = web.Application(middlewares=[headers_middleware, session_middleware],
                          client_max_size=gateway.config.server.max_body_bytes)
    app[GATEWAY] = gateway
    app[ADMIN] = InternalAdmin(gateway)
    app[USERS] = ConsoleUsers(gateway.store, gateway.clock)
    app[SESSIONS] = sessions_for(gateway)
    # missing keys of the API's JSON render as empty (an optional field left out), not as errors
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["short"] = lambda value, n=19: (str(value)[:n] if value else "")

    async def start(_app: web.Application) -> None:
        await app[ADMIN].start()

    async def stop(_app: web.Application) -> None:
        await app[ADMIN].stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    for module in (pages_home, pages_certificates, pages_ops, pages_configs):
        module.add_routes(app)
    app.router.add_static("/static", HERE / "static", append_version=True)
    return app
