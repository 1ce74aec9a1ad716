"""An admin edit is applied by every worker on its next request (no TTL).

``gateway serve --workers 2`` on PostgreSQL: each worker caches protocol
configurations; the configuration generation kept in the store tells every worker
its cache is stale on the very next request after another worker committed an edit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from conformance.harness import GatewayInfo, GatewayProcess, run_cli
from gateway.config import load_config

from .conftest import fresh_pg_database


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    async with fresh_pg_database("test_gen") as url:
        yield url


async def _session_on_worker(info: GatewayInfo, worker: int) -> aiohttp.ClientSession:
    """A session whose one kept-alive connection is served by ``worker``."""
    for _ in range(200):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context(), limit=1))
        async with session.get(f"{info.https}/healthz") as resp:
            if (await resp.json())["worker"] == worker:
                return session
        await session.close()
    raise AssertionError(f"no connection landed on worker {worker}")


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        await resp.read()
        return resp.status


async def test_an_admin_edit_on_one_worker_is_seen_by_the_other_at_once(
    tmp_path: Path, pg_database: str,
) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", "--store-url", pg_database, data_dir=data_dir)
    cfg = load_config(data_dir)
    assert cfg.store.url == pg_database
    cfg.server.workers = 2
    cfg.save()
    proc = GatewayProcess(data_dir)
    info = await asyncio.to_thread(proc.start)
    sessions: list[aiohttp.ClientSession] = []
    try:
        editor = await _session_on_worker(info, 0)
        reader = await _session_on_worker(info, 1)
        sessions += [editor, reader]
        urls = {
            "acme": f"{info.https}/acme/acme/directory",
            "est": f"{info.https}/.well-known/est/est/cacerts",
            "scep": f"{info.https}/scep/scep/pkiclient.exe?operation=GetCACaps",
        }
        headers = {"Authorization": f"Bearer {info.api_key}"}
        for config_id, url in urls.items():
            # both workers have served (and cached) the configuration
            assert await _status(reader, url) == 200, config_id
            assert await _status(editor, url) == 200, config_id
            async with editor.patch(f"{info.https}/admin/protocol-configs/{config_id}",
                                    json={"enabled": False}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            # the other worker's very next request sees the change
            assert await _status(reader, url) in (403, 404), config_id
            async with editor.patch(f"{info.https}/admin/protocol-configs/{config_id}",
                                    json={"enabled": True}, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            assert await _status(reader, url) == 200, config_id
        async with reader.get(f"{info.https}/healthz") as resp:
            assert (await resp.json())["worker"] == 1  # the reader stayed on worker 1 throughout
    finally:
        for session in sessions:
            await session.close()
        await asyncio.to_thread(proc.stop)
    log = proc.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_init_takes_the_store_url_from_the_environment(tmp_path: Path, pg_database: str) -> None:
    """Containers and replicas set GATEWAY_STORE_URL instead of passing --store-url."""
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir, env={"GATEWAY_STORE_URL": pg_database})
    assert load_config(data_dir).store.url == pg_database
    assert not (data_dir / "gateway.db").exists()
