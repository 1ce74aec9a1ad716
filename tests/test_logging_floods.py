"""Malformed input cannot fill the disk: a client error is one line at most at WARNING,
never a traceback, and a flood of them writes a bounded number of lines.

Drives ``gateway serve`` (a subprocess, logging exactly as in production) over real
sockets and reads its log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from pathlib import Path

import aiohttp

from conformance.harness import GatewayProcess, run_cli
from gateway.logs import FloodFilter, RateLimiter

ACCESS_LINE = re.compile(r" INFO gateway\.http: (GET|POST|HEAD|PUT|PATCH|DELETE) \S+ \d{3}$")


def _overlong_request_line(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(200)


async def _malformed(session: aiohttp.ClientSession, https: str, http: str) -> list[int]:
    statuses = []
    for url, body, ctype in (
        (f"{https}/acme/acme/new-account", b"{not json", "application/jose+json"),
        (f"{https}/acme/acme/new-order", b'{"protected": "!!", "payload": "", "signature": ""}',
         "application/jose+json"),
        (f"{http}/scep/scep/pkiclient.exe?operation=PKIOperation", b"\x30\x05garbage", "application/x-pki-message"),
        (f"{https}/.well-known/est/est/simpleenroll", b"!!! not base64 !!!", "application/pkcs10"),
        (f"{https}/.well-known/est/est/simplereenroll", b"\x00\x01", "application/pkcs10"),
    ):
        async with session.post(url, data=body, headers={"Content-Type": ctype}) as resp:
            await resp.read()
            statuses.append(resp.status)
    return statuses


def _problem_lines(log: str) -> list[str]:
    """Every line that is not the one access line a request gets at INFO."""
    return [line for line in log.splitlines() if line.strip() and not ACCESS_LINE.search(line)
            and " INFO " not in line]


async def test_malformed_requests_log_one_warning_line_and_floods_stay_bounded(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    proc = GatewayProcess(data_dir)
    info = await asyncio.to_thread(proc.start)
    try:
        start = len(proc.log_path.read_text().splitlines())
        answer = await asyncio.to_thread(_overlong_request_line, proc.http_port)
        assert re.match(rb"HTTP/1.[01] 400 ", answer), answer
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context())) as session:
            statuses = await _malformed(session, info.https, info.http)
            assert all(400 <= s < 500 for s in statuses), statuses
            once = proc.log_path.read_text().splitlines()[start:]
            # the flood: 1000 over-long request lines and 200 rounds of bad protocol bodies
            await asyncio.gather(*(asyncio.to_thread(_overlong_request_line, proc.http_port) for _ in range(1000)))
            for _ in range(200):
                await _malformed(session, info.https, info.http)
    finally:
        await asyncio.to_thread(proc.stop)
    once_text = "\n".join(once)
    assert "Traceback" not in once_text and " ERROR " not in once_text, once_text
    bad_http = [line for line in once if "bad HTTP request" in line]
    assert len(bad_http) == 1 and " WARNING aiohttp.server: " in bad_http[0], once_text
    assert all(" WARNING " in line for line in _problem_lines(once_text)), once_text
    log = proc.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    problems = _problem_lines(log)
    assert len([line for line in problems if "bad HTTP request" in line]) <= 20, len(problems)
    assert len(problems) <= 60, "\n".join(problems[-20:])


def test_rate_limiter_reports_what_it_suppressed() -> None:
    now = [0.0]
    limiter = RateLimiter(burst=3, interval=60.0, clock=lambda: now[0])
    assert [limiter.admit("k") for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    assert limiter.admit("other") == (True, 0)  # per key
    now[0] = 61.0
    assert limiter.admit("k") == (True, 2)  # the next window reports the two dropped once
    assert limiter.admit("k") == (True, 0)


def test_a_bug_shows_its_traceback_once_per_site_then_one_line() -> None:
    records: list[logging.LogRecord] = []
    flood = FloodFilter(RateLimiter(burst=1000))
    log = logging.getLogger("test.floods")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(flood)
    log.addHandler(handler)
    log.propagate = False
    try:
        for _ in range(3):
            try:
                {}["missing"]  # the same site every time
            except KeyError:
                log.exception("unhandled error on %s", "/x")
    finally:
        log.removeHandler(handler)
    assert [r.exc_info is not None for r in records] == [True, False, False]
    assert "traceback logged once" in records[1].getMessage() and "KeyError" in records[1].getMessage()
    assert sys.exc_info() == (None, None, None)
