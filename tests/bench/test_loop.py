"""The timed window against a real HTTP server: count bound, errors, and the watchdog."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from bench.loop import Limits, timed_run
from bench.procs import free_port


class _Worker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None

    async def setup(self) -> None:
        self.session = aiohttp.ClientSession()

    async def issue(self, index: int) -> Any:
        assert self.session is not None
        async with self.session.get(self.url) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            return await resp.text()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


async def _server(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


async def test_a_run_stops_at_its_operation_budget_and_counts_errors() -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=500 if calls % 4 == 0 else 200, text="ok")

    runner, url = await _server(handler)
    try:
        run = await timed_run([_Worker(url) for _ in range(3)], Limits(duration=60, max_ops=40))
    finally:
        await runner.cleanup()
    assert run.started == 40
    assert len(run.artefacts) + run.error_count == 40
    assert run.error_count >= 8
    assert not run.stalled
    assert len(run.latencies) == len(run.artefacts)


async def test_the_watchdog_ends_a_run_whose_server_stops_answering() -> None:
    """Like Pebble's deadlock: the server stays up but answers nothing after a while."""
    answered = 0
    hang = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal answered
        if answered >= 25:
            await hang.wait()
        answered += 1
        return web.Response(text="ok")

    runner, url = await _server(handler)
    try:
        run = await timed_run([_Worker(url) for _ in range(4)], Limits(duration=60, max_ops=10_000,
                                                                     stall_timeout=0.5))
    finally:
        hang.set()
        await runner.cleanup()
    assert run.stalled and run.stalled_phase == "window"
    assert len(run.artefacts) == 25 - 4  # four answers went to the warm-up
    assert 0 < run.elapsed < 60


async def test_a_server_that_hangs_during_warm_up_is_reported_not_awaited() -> None:
    hang = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response()

    runner, url = await _server(handler)
    try:
        run = await timed_run([_Worker(url)], Limits(duration=60, max_ops=10, stall_timeout=0.3))
    finally:
        hang.set()
        await runner.cleanup()
    assert run.stalled and run.stalled_phase == "warm-up"
    assert run.artefacts == [] and run.elapsed == 0.0
