"""The MDM web service's management surfaces: the admin API under ``/admin/mdm`` (over
HTTPS with the dev API key), the real ``gateway mdm`` CLI on a stopped data directory,
and ``gateway info --json`` (whose dev password must really authenticate)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conformance.harness import run_cli

from .conftest import CONFIG, DIGITAL_ID, SCEP_CONFIG, MdmServer

PROFILE = "mdmws-digsig-keyenc-client-auth"
DID = {"name": "laptop", "profile": PROFILE, "rdn_format": "CN=<deviceName>,OU=<igusername>",
       "parent_dn": "O=Acme,C=US"}


async def admin(server: MdmServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One admin API call; the status and the JSON body (None when empty)."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{server.info.https}/admin{path}", json=body,
                                   ssl=server.info.ssl_context(),
                                   headers={"Authorization": f"Bearer {server.info.api_key}"}) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None


async def test_admin_creates_a_configuration_with_its_scep_configuration(mdm: MdmServer) -> None:
    status, body = await admin(mdm, "POST", "/mdm", {"id": "ws1", "platform": "workspace-one"})
    assert status == 201, body
    assert body["platform"] == "workspace-one"
    assert body["scep_config"] == "ws1-scep"
    assert await mdm.gw.door("scep").find_configuration("ws1-scep") is not None
    status, shown = await admin(mdm, "GET", "/mdm/ws1")
    assert status == 200, shown
    assert shown["web_service_url"] == f"{mdm.info.https}/mdmws/ws1/AdminService"
    assert shown["wsdl"] == shown["web_service_url"] + "?wsdl"
    assert shown["scep_url"] == f"{mdm.info.http}/scep/ws1-scep"
    status, _ = await admin(mdm, "GET", "/mdm/nosuch")
    assert status == 404
    status, body = await admin(mdm, "POST", "/mdm", {"id": "ws1", "platform": "workspace-one"})
    assert status == 409, body
    status, body = await admin(mdm, "POST", "/mdm", {"id": "ws2", "platform": "no-such-mdm"})
    assert status == 400, body
    status, body = await admin(mdm, "POST", "/mdm", {"id": "a" * 14, "platform": "jamf"})
    assert status == 400, body  # <id>-scep would exceed 18 characters


async def test_admin_digital_ids(mdm: MdmServer) -> None:
    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/digital-ids", DID)
    assert status == 201, body
    assert body["profile"] == PROFILE and body["variables"] == ["deviceName", "igusername"]
    assert body["scep_url"] == f"{mdm.info.http}/scep/{SCEP_CONFIG}"
    status, listed = await admin(mdm, "GET", f"/mdm/{CONFIG}/digital-ids")
    assert status == 200
    assert {d["name"] for d in listed["items"]} == {DIGITAL_ID, "laptop"}

    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/digital-ids", DID)
    assert status == 409, body
    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/digital-ids",
                               {**DID, "name": "badvar", "rdn_format": "CN=<noSuchVariable>"})
    assert status == 400, body
    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/digital-ids",
                               {**DID, "name": "badprofile", "profile": "mdmws-no-such-profile"})
    assert status == 400, body

    status, _ = await admin(mdm, "DELETE", f"/mdm/{CONFIG}/digital-ids/laptop")
    assert status == 204
    status, listed = await admin(mdm, "GET", f"/mdm/{CONFIG}/digital-ids")
    assert [d["name"] for d in listed["items"]] == [DIGITAL_ID]
    status, _ = await admin(mdm, "DELETE", f"/mdm/{CONFIG}/digital-ids/laptop")
    assert status == 404


async def test_admin_credentials_password_shown_once(mdm: MdmServer) -> None:
    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/credentials", {"username": "ws1-api"})
    assert status == 201, body
    password = body["password"]
    assert isinstance(password, str) and len(password) >= 12
    status, listed = await admin(mdm, "GET", f"/mdm/{CONFIG}/credentials")
    assert status == 200
    assert "ws1-api" in {c["username"] for c in listed["items"]}
    assert password not in json.dumps(listed) and all("password" not in c for c in listed["items"])

    svc = await mdm.client("ws1-api", password)
    assert (await mdm.call(svc, "Authenticate")).Username == "ws1-api"

    for bad in ("Upper", "a", "a" * 19):
        status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/credentials", {"username": bad})
        assert status == 400, (bad, body)
    status, _ = await admin(mdm, "DELETE", f"/mdm/{CONFIG}/credentials/ws1-api")
    assert status == 204
    status, listed = await admin(mdm, "GET", f"/mdm/{CONFIG}/credentials")
    assert "ws1-api" not in {c["username"] for c in listed["items"]}


async def test_admin_unlocks_a_credential_locked_over_soap_and_resets_its_password(mdm: MdmServer) -> None:
    import zeep.exceptions

    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/credentials", {"username": "locked-api"})
    assert status == 201, body
    password = body["password"]
    bad = await mdm.client("locked-api", "wrong-password")
    for _ in range(5):
        with pytest.raises(zeep.exceptions.Fault):
            await mdm.call(bad, "Authenticate")
    good = await mdm.client("locked-api", password)
    with pytest.raises(zeep.exceptions.Fault) as caught:
        await mdm.call(good, "Authenticate")
    assert caught.value.detail.find("{urn:enrollment-gateway:mdmws:1}Fault/{urn:enrollment-gateway:mdmws:1}Code"
                                    ).text == "LockedOut"
    status, listed = await admin(mdm, "GET", f"/mdm/{CONFIG}/credentials")
    assert next(c for c in listed["items"] if c["username"] == "locked-api")["locked"] is True

    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/credentials/locked-api/unlock")
    assert status == 200, body
    assert body["locked"] is False and body["failures"] == 0 and "password" not in body
    assert (await mdm.call(good, "Authenticate")).Username == "locked-api"

    status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/credentials/locked-api/password")
    assert status == 200, body
    fresh = body["password"]
    assert isinstance(fresh, str) and len(fresh) >= 12 and fresh != password
    with pytest.raises(zeep.exceptions.Fault):
        await mdm.call(good, "Authenticate")  # the old password no longer works
    assert (await mdm.call(await mdm.client("locked-api", fresh), "Authenticate")).Username == "locked-api"
    status, listed = await admin(mdm, "GET", f"/mdm/{CONFIG}/credentials")
    assert fresh not in json.dumps(listed)

    for path in ("nobody/unlock", "nobody/password"):
        status, body = await admin(mdm, "POST", f"/mdm/{CONFIG}/credentials/{path}")
        assert status == 404, body
    status, body = await admin(mdm, "POST", "/mdm/nosuch/credentials/locked-api/unlock")
    assert status == 404, body


@pytest.fixture
def stopped(mdm_data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the initialized data directory, no gateway running on it."""
    target = tmp_path / "stopped"
    shutil.copytree(mdm_data_dir, target)
    return target


def cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, data_dir=data_dir, check=check)


def test_cli_manages_configurations_digital_ids_and_credentials(stopped: Path) -> None:
    created = json.loads(cli(stopped, "mdm", "create", "ivt", "--platform", "ivanti", "--json").stdout)
    assert created["config"] == "ivt" and created["scep_config"] == "ivt-scep"

    ids = json.loads(cli(stopped, "mdm", "digital-id", "add", "phone", "--config", "ivt", "--profile", PROFILE,
                         "--rdn-format", "CN=<deviceName>", "--parent-dn", "O=Acme,C=US", "--json").stdout)
    assert [d["name"] for d in ids] == ["phone"]
    listed = json.loads(cli(stopped, "mdm", "digital-id", "list", "--config", "ivt", "--json").stdout)
    assert listed[0]["variables"] == ["deviceName"] and listed[0]["parent_dn"] == "O=Acme,C=US"
    assert cli(stopped, "mdm", "digital-id", "add", "phone", "--config", "ivt", "--profile", PROFILE,
               "--rdn-format", "CN=<deviceName>", check=False).returncode != 0
    assert cli(stopped, "mdm", "digital-id", "add", "bad", "--config", "ivt", "--profile", PROFILE,
               "--rdn-format", "CN=<nope>", check=False).returncode != 0

    out = cli(stopped, "mdm", "credential", "add", "ivanti-api", "--config", "ivt").stdout
    assert "ivanti-api" in out and "password" in out
    password = out.split("password", 1)[1].split()[0]
    creds = cli(stopped, "mdm", "credential", "list", "--config", "ivt", "--json").stdout
    assert [c["username"] for c in json.loads(creds)] == ["ivanti-api"]
    assert password not in creds
    assert cli(stopped, "mdm", "credential", "add", "Bad", "--config", "ivt", check=False).returncode != 0
    out = cli(stopped, "mdm", "credential", "password", "ivanti-api", "--config", "ivt").stdout
    fresh = out.split("password", 1)[1].split()[0]
    assert len(fresh) >= 12 and fresh != password
    assert fresh not in cli(stopped, "mdm", "credential", "list", "--config", "ivt", "--json").stdout
    for verb in ("password", "unlock"):
        assert cli(stopped, "mdm", "credential", verb, "nobody", "--config", "ivt", check=False).returncode != 0

    shown = json.loads(cli(stopped, "mdm", "show", "ivt", "--json").stdout)
    assert shown["platform"] == "ivanti" and [d["name"] for d in shown["digital_ids"]] == ["phone"]
    assert shown["wsdl"].endswith("/mdmws/ivt/AdminService?wsdl")

    cli(stopped, "mdm", "digital-id", "remove", "phone", "--config", "ivt")
    cli(stopped, "mdm", "credential", "remove", "ivanti-api", "--config", "ivt")
    assert json.loads(cli(stopped, "mdm", "digital-id", "list", "--config", "ivt", "--json").stdout) == []
    assert json.loads(cli(stopped, "mdm", "credential", "list", "--config", "ivt", "--json").stdout) == []


def test_cli_variables(stopped: Path) -> None:
    """Every ``gateway`` command takes --data-dir (run_cli always passes it), this one too."""
    variables = cli(stopped, "mdm", "variables").stdout
    assert "<deviceName>" in variables and "<igusername>" in variables


async def test_info_lists_the_dev_configuration_and_its_password_authenticates(mdm: MdmServer) -> None:
    import asyncio

    out = await asyncio.to_thread(run_cli, "info", "--json", data_dir=mdm.info.data_dir)
    entry = next(e for e in json.loads(out.stdout)["protocols"]["mdm"] if e["config"] == CONFIG)
    assert entry["wsdl"].endswith(f"/mdmws/{CONFIG}/AdminService?wsdl")
    assert entry["scep_url"].endswith(f"/scep/{SCEP_CONFIG}")
    assert [d["name"] for d in entry["digital_ids"]] == [DIGITAL_ID]
    assert entry["username"] and entry["password"]
    svc = await mdm.client(entry["username"], entry["password"])
    got = await mdm.call(svc, "Authenticate")
    assert got.Username == entry["username"] and got.ConfigurationId == CONFIG
    with pytest.raises(Exception):
        await mdm.call(await mdm.client(entry["username"], entry["password"] + "x"), "Authenticate")
