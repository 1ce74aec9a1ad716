"""EST's wire errors: the core's error kinds as HTTP statuses with a plain-text reason.

RFC 7030 section 4.2.3 asks for a human-readable ``text/plain`` body on errors.
Refinements over the core's default mapping: ``401`` always carries a Basic
challenge naming the label's realm (RFC 7235 requires a challenge; a label that
takes no passwords answers ``403`` instead, there being no HTTP scheme for TLS
client certificates), :class:`NotSupported` is ``501``, and ``401`` (like
``202``) has an *empty* body: Bouncy Castle's client (1.72) closes those
responses unread and fails with "Stream closed before limit fully read" on any
body, before it can answer the challenge or wait for Retry-After.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.errors import HTTP_STATUS, ErrorKind, GatewayError

TEXT = "text/plain; charset=utf-8"
RETRY_AFTER_SECONDS = 5
log = logging.getLogger("gateway.est")


class NotSupported(GatewayError):
    """An EST feature this server (or this label) does not offer: 501."""

    kind = ErrorKind.BAD_REQUEST
    status = 501


def realm(label: str) -> str:
    return f'Basic realm="EST {label}"'


def text_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=(message.rstrip() + "\n").encode(),
                        headers={"Content-Type": TEXT, **(headers or {})})


def empty_response(status: int, headers: dict[str, str]) -> web.Response:
    """A body-less answer (401, 202): see the module docstring for why."""
    return web.Response(status=status, headers=headers)


def error_response(exc: GatewayError, label: str | None, basic: bool) -> web.Response:
    """The response for a typed failure on ``label`` (``basic``: the label takes passwords)."""
    status = getattr(exc, "status", None) or HTTP_STATUS[exc.kind]
    headers: dict[str, str] = {}
    if exc.kind is ErrorKind.UNAUTHORIZED:
        if basic and label is not None:
            log.info("EST 401 on label %s: %s", label, exc.detail)
            return empty_response(401, {"WWW-Authenticate": realm(label)})
        status = 403
    if status == 503:  # the store or CA cannot serve now: when to try again (RFC 9110 10.2.3)
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return text_response(status, exc.detail, headers)
