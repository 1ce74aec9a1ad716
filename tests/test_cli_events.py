"""``gateway events``: the audit trail from the CLI, filtered as ``GET /admin/events`` is
(subprocesses on a real data directory; the same filters asked of the real admin API)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conformance.harness import run_cli, running_gateway


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gateway with events of several CAs, configurations and types."""
    path = tmp_path_factory.mktemp("cli-events") / "data"
    run_cli("init", data_dir=path)
    run_cli("ca", "create", "events-root", "--name", "Events Root", data_dir=path)
    run_cli("scep", "static-challenge", data_dir=path)
    run_cli("est", "user", "add", "est", "events-user", data_dir=path)
    return path


def events(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(run_cli("events", "--json", *args, data_dir=data_dir).stdout))


def test_lists_newest_first_with_the_actor(data_dir: Path) -> None:
    items = events(data_dir)
    ids = [e["id"] for e in items]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    created = next(e for e in items if e["type"] == "ca_create" and e["ca"] == "events-root")
    assert created["detail"]["actor"] == f"cli:{getpass.getuser()}"
    text = run_cli("events", "--type", "ca_create", "--ca", "events-root", data_dir=data_dir).stdout.splitlines()
    assert len(text) == 1 and text[0].split()[2:4] == ["ca_create", "success"]
    assert f"actor=cli:{getpass.getuser()}" in text[0] and "ca=events-root" in text[0]


@pytest.mark.parametrize("option, field, value", [
    ("--ca", "ca", "events-root"),
    ("--configuration", "protocol_config", "scep"),
    ("--config", "protocol_config", "est"),
    ("--type", "type", "credential_create"),
    ("--status", "status", "success"),
])
def test_each_filter_keeps_only_its_events(data_dir: Path, option: str, field: str, value: str) -> None:
    everything = events(data_dir, "--limit", "500")
    picked = events(data_dir, option, value, "--limit", "500")
    assert picked and all(e[field] == value for e in picked)
    assert [e["id"] for e in picked] == [e["id"] for e in everything if e[field] == value]


def test_limit_offset_and_combined_filters(data_dir: Path) -> None:
    newest = events(data_dir, "--limit", "3")
    assert len(newest) == 3
    assert events(data_dir, "--limit", "2", "--offset", "1") == newest[1:3]
    both = events(data_dir, "--configuration", "scep", "--type", "scep_static_challenge")
    assert both and all(e["protocol_config"] == "scep" and e["type"] == "scep_static_challenge" for e in both)
    assert events(data_dir, "--ca", "events-root", "--configuration", "scep") == []


async def test_matches_the_admin_api(data_dir: Path) -> None:
    """The same filters give the same events through ``GET /admin/events``."""
    queries = [{"ca": "events-root"}, {"configuration": "scep"}, {"type": "credential_create", "limit": "1"},
               {"configuration": "est", "status": "success", "limit": "5"}]
    async with running_gateway(data_dir) as (_gw, info):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context())) as session:
            for query in queries:
                async with session.get(info.data["admin"]["url"] + "/events", params=query,
                                       headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
                    assert resp.status == 200
                    api = (await resp.json())["items"]
                argv = [a for k, v in query.items() for a in (f"--{k}", v)]
                assert events(data_dir, *argv) == api, query


@pytest.mark.parametrize("argv, message", [
    (("--limit", "0"), "--limit must be from 1 to 500"),
    (("--offset", "-1"), "--offset must be from 0"),
    (("--serial", "not-hex"), "--serial must be a hexadecimal serial number"),
    (("--since", "yesterday"), "--since"),
])
def test_bad_filters_are_one_line_and_exit_1(data_dir: Path, argv: tuple[str, ...], message: str) -> None:
    proc = run_cli("events", *argv, data_dir=data_dir, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr


def test_uninitialized_directory_is_refused(tmp_path: Path) -> None:
    proc = run_cli("events", data_dir=tmp_path / "nothing", check=False)
    assert proc.returncode == 1 and "not initialized" in proc.stderr
    assert not (tmp_path / "nothing").exists()
