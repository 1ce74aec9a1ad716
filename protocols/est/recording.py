"""A tap on EST traffic, for recording real clients' exchanges as test fixtures.

The conformance suites run real clients (curl, Bouncy Castle) against an
in-process gateway and save what those clients sent and got under
``fixtures/est/``; the ordinary suite replays the saved bytes on every run.
Nothing is recorded unless a tap is registered (only test code does), so a
production gateway never keeps request bodies or Authorization headers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

from aiohttp import web


@dataclass(frozen=True)
class TappedExchange:
    method: str
    path: str
    request_headers: list[tuple[str, str]]  # as received, in order
    request_body: bytes
    tls_version: str | None
    client_certificate: bool
    status: int
    response_headers: list[tuple[str, str]]  # as set by the handler (framing headers excluded)
    response_body: bytes


Tap = Callable[[TappedExchange], None]
_TAPS: list[Tap] = []


@contextlib.contextmanager
def tapping(tap: Tap) -> Iterator[None]:
    """Hand every EST exchange to ``tap`` while the block runs."""
    _TAPS.append(tap)
    try:
        yield
    finally:
        _TAPS.remove(tap)


async def record_exchange(request: web.Request, response: web.StreamResponse) -> None:
    if not _TAPS or not isinstance(response, web.Response):
        return
    body = await request.read()  # cached when the handler read it already
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    exchange = TappedExchange(
        method=request.method,
        path=request.path_qs,
        request_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        request_body=body,
        tls_version=ssl_object.version() if ssl_object is not None else None,
        client_certificate=bool(ssl_object.getpeercert(binary_form=True)) if ssl_object is not None else False,
        status=response.status,
        response_headers=list(response.headers.items()),
        response_body=bytes(response.body or b""),  # type: ignore[arg-type]
    )
    for tap in list(_TAPS):
        tap(exchange)
