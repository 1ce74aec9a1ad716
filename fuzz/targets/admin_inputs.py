"""Admin API inputs (gateway/admin/inputs.py and the readers the handlers build on it):
query strings (pages, the certificate filter, flags, times, serials), the path serial,
and JSON bodies (read_json, Fields, the issue overrides, revocation reasons, the bulk
revocation filter), read exactly as gateway/admin/certificates.py reads them.

An input is ``<query string> LF <path serial> LF <JSON body>``; the request is a real
aiohttp ``web.Request`` (made by aiohttp's test utilities) so ``read_json`` reads its
body stream as the server does. Declared error: :class:`gateway.errors.BadRequest`
(and aiohttp's 413 for an oversized body).
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.admin.certificates import read_filter, read_overrides, read_reason
from gateway.admin.inputs import MAX_BODY, Fields, QueryArgs, check_serial, read_json
from gateway.ca.overrides import overrides_from_json
from gateway.errors import BadRequest

DESCRIPTION = "admin API: query strings, path serials, JSON bodies and the fields read from them"


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


@functools.cache
def _app() -> web.Application:
    app = web.Application()
    app[MAX_BODY] = 1 << 20
    return app


def seeds() -> list[bytes]:
    bodies: list[dict[str, Any]] = [
        {"ca": "issuing", "profile": "tls-server", "csr": "-----BEGIN CERTIFICATE REQUEST-----",
         "overrides": {"subject": "CN=a,O=b", "sans": ["dns:a.example", "ip:192.0.2.1"],
                       "not_before": "2026-01-01T00:00:00Z", "validity_seconds": 3600,
                       "extensions": [{"oid": "1.2.3.4", "value": "BQA=", "critical": False}],
                       "variables": {"x": "y"}}},
        {"reason": "keyCompromise", "invalidity_date": "2026-11-30"},
        {"filter": {"ca": "issuing", "status": "valid", "expires_before": "2027-01-01"}, "reason": 1},
        {"all": True, "reason": "cessationOfOperation"},
    ]
    queries = ["limit=10&offset=20", "status=revoked&ca=issuing&expires_before=2027-01-01T00:00:00Z",
               "chain=true&serial=0x5c:0f:fe:e0", "issued_after=2026-01-01&subject=CN%3Da"]
    serials = ["5c0ffee", "0x01:02", "ABCDEF"]
    return [f"{q}\n{s}\n{json.dumps(b)}".encode() for q, s, b in zip(queries * 2, serials * 3, bodies)]


def _request(query: str, body: bytes) -> web.Request:
    from aiohttp.streams import StreamReader

    class _Protocol:  # what StreamReader needs of its protocol (flow control only)
        _reading_paused = False

        def pause_reading(self, **_: object) -> None:
            pass

        def resume_reading(self, **_: object) -> None:
            pass

    payload = StreamReader(_Protocol(), 1 << 16, loop=_loop())  # type: ignore[arg-type]
    payload.feed_data(body)
    payload.feed_eof()
    headers = CIMultiDict({"Content-Type": "application/json", "Content-Length": str(len(body))})
    return make_mocked_request("POST", "/admin/x?" + query, headers=headers, app=_app(), payload=payload,
                               loop=_loop())


def _query(request: web.Request) -> None:
    args = QueryArgs(request)
    args.page()
    read_filter(args)
    args.flag("chain")
    args.serial("serial")
    args.time("since")
    args.done()


def _body(request: web.Request) -> None:
    f = Fields(_loop().run_until_complete(read_json(request, optional=True)))
    f.text("ca")
    f.text("profile")
    f.text("csr")
    overrides = f.mapping("overrides")
    overrides_from_json(read_overrides(overrides))
    read_reason(f.raw("reason"))
    f.time("invalidity_date")
    f.flag("all", default=False)
    filter_fields = Fields(f.mapping("filter") or {}, where="filter")
    read_filter(filter_fields)
    filter_fields.done()
    f.done()


def test_one_input(data: bytes) -> None:
    query, _, rest = data.partition(b"\n")
    serial, _, body = rest.partition(b"\n")
    try:
        request = _request(query.decode("utf-8", "replace"), body)
    except ValueError:  # yarl refuses the URL before any gateway code sees it
        return
    for step in (_query, _body):
        try:
            step(request)
        except (BadRequest, web.HTTPRequestEntityTooLarge):
            pass
    try:
        int(check_serial(serial.decode("utf-8", "replace")).replace(":", ""), 16)
    except BadRequest:
        pass
