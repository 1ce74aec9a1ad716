"""``gateway apikey``: create (role, expiry), list, revoke, as an operator runs them, and
what the real admin API then makes of each key."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conformance.harness import run_cli, running_gateway
from gateway.clock import FakeClock


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-apikey") / "data"
    run_cli("init", data_dir=path)
    return path


def listed(data_dir: Path) -> dict[str, dict[str, Any]]:
    return {k["name"]: k for k in json.loads(run_cli("apikey", "list", "--json", data_dir=data_dir).stdout)}


def create(data_dir: Path, *argv: str) -> str:
    out = run_cli("apikey", "create", *argv, data_dir=data_dir).stdout.splitlines()
    assert len(out) == 1 and len(out[0]) >= 40, out  # the key, alone on stdout, shown once
    return out[0]


async def status_of(session: aiohttp.ClientSession, url: str, key: str, method: str = "GET") -> int:
    kwargs: dict[str, Any] = {"json": {"name": "made-by-test"}} if method == "POST" else {}
    async with session.request(method, url, headers={"Authorization": f"Bearer {key}"}, **kwargs) as resp:
        return resp.status


def one_line_error(proc: Any, text: str) -> None:
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert len(proc.stderr.strip().splitlines()) == 1 and text in proc.stderr, proc.stderr


def test_create_with_role_and_expiry_then_list(data_dir: Path) -> None:
    key = create(data_dir, "ci-auditor", "--role", "auditor", "--expires", "30d")
    forever = create(data_dir, "ci-admin")
    keys = listed(data_dir)
    auditor, admin = keys["ci-auditor"], keys["ci-admin"]
    assert (auditor["role"], auditor["status"], auditor["kind"]) == ("auditor", "active", "api_key")
    lifetime = dt.datetime.fromisoformat(auditor["expires_at"]) - dt.datetime.fromisoformat(auditor["created_at"])
    assert round(lifetime / dt.timedelta(days=1)) == 30
    assert (admin["role"], admin["expires_at"], admin["status"]) == ("admin", None, "active")
    text = run_cli("apikey", "list", data_dir=data_dir).stdout
    assert "name=ci-auditor" in text and "role=auditor" in text
    for shown in (text, json.dumps(keys)):
        assert key not in shown and forever not in shown


def test_duplicate_name_is_refused(data_dir: Path) -> None:
    create(data_dir, "ci-twice")
    one_line_error(run_cli("apikey", "create", "ci-twice", "--role", "auditor", data_dir=data_dir, check=False),
                   "already exists")
    assert listed(data_dir)["ci-twice"]["role"] == "admin"


@pytest.mark.parametrize("argv, text", [
    (("bad name!",), "API key name"),
    (("ci-bad-expiry", "--expires", "soon"), "expires must be like"),
    (("ci-zero", "--expires", "0d"), "expires must be like"),
])
def test_bad_input_is_one_line_and_makes_nothing(data_dir: Path, argv: tuple[str, ...], text: str) -> None:
    one_line_error(run_cli("apikey", "create", *argv, data_dir=data_dir, check=False), text)
    assert argv[0] not in listed(data_dir)


def test_revoke_by_name_and_by_id(data_dir: Path) -> None:
    create(data_dir, "ci-gone")
    create(data_dir, "ci-gone-by-id")
    run_cli("apikey", "revoke", "ci-gone", data_dir=data_dir)
    run_cli("apikey", "revoke", listed(data_dir)["ci-gone-by-id"]["id"], data_dir=data_dir)
    keys = listed(data_dir)
    assert keys["ci-gone"]["status"] == keys["ci-gone-by-id"]["status"] == "revoked"
    one_line_error(run_cli("apikey", "revoke", "ci-gone", data_dir=data_dir, check=False), "already revoked")
    one_line_error(run_cli("apikey", "revoke", "no-such-key", data_dir=data_dir, check=False), "no API key")


async def test_the_admin_api_honours_role_revocation_and_expiry(data_dir: Path) -> None:
    auditor = create(data_dir, "api-auditor", "--role", "auditor")
    admin = create(data_dir, "api-admin", "--expires", "2h")
    revoked = create(data_dir, "api-revoked")
    run_cli("apikey", "revoke", "api-revoked", data_dir=data_dir)
    clock = FakeClock()
    async with running_gateway(data_dir, clock=clock) as (_gw, info):
        base = info.data["admin"]["url"]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context())) as session:
            assert await status_of(session, base + "/events", auditor) == 200
            assert await status_of(session, base + "/api-keys", auditor, "POST") == 403
            assert await status_of(session, base + "/events", admin) == 200
            assert await status_of(session, base + "/events", revoked) == 401
            clock.advance(dt.timedelta(hours=3))  # past the admin key's expiry
            assert await status_of(session, base + "/events", admin) == 401
            assert await status_of(session, base + "/events", auditor) == 200
