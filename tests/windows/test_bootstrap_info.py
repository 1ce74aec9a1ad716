"""``gateway init`` makes the dev Windows configuration; ``gateway info --json`` (the real CLI)
names its CEP and CES URLs per authentication mode and the dev UsernameToken credential,
and every URL it prints is served. The schema the Windows tables come from is exactly
what the migrations make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from conformance.harness import run_cli
from gateway.columns import NAMING_CONVENTION
from protocols.windows import schema, wssecurity
from protocols.windows.settings import WindowsSettings

from .helpers import WindowsServer, get_policies_body

MODES = {"username", "certificate", "kerberos"}


def test_info_json_lists_the_dev_configuration_under_protocols_xcep(windows_data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(windows_data_dir, data)
    info = json.loads(run_cli("info", "--json", data_dir=data).stdout)
    assert "windows" not in info["protocols"]
    entries = info["protocols"]["xcep"]
    assert [e["config"] for e in entries] == ["windows"]
    dev = entries[0]
    assert set(dev["cep"]) >= MODES and set(dev["ces"]) == MODES
    assert dev["cep"]["username"] == f"{info['https']}/windows/windows/cep/username"
    assert dev["ces"]["certificate"] == f"{info['https']}/windows/windows/ces/certificate"
    assert dev["adcs"]["cep"]["kerberos"] == f"{info['https']}/ADPolicyProvider_CEP_Kerberos/service.svc/CEP"
    assert dev["adcs"]["ces"]["username"].endswith("_CES_UsernamePassword/service.svc/CES")
    assert dev["username"] == "windows" and len(dev["password"]) >= 16
    assert dev["url"] == dev["adcs"]["cep"]["username"]  # what `gateway info` prints for XCEP
    banner = run_cli("info", data_dir=data).stdout
    assert f"XCEP             {dev['url']}" in banner


async def test_the_dev_configuration_has_a_user_and_a_computer_template(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    assert rec.ca_id == "issuing-rsa"  # legacy CSPs and AD CS-like chains: RSA throughout
    settings = WindowsSettings.of(rec)
    machine = {t.name: t.machine for t in settings.templates}
    assert machine == {"GatewayUser": False, "GatewayComputer": True}
    assert settings.adcs_paths
    assert {t.profile for t in settings.templates} == set(rec.profiles) == {"windows-user", "windows-computer"}
    # the dev password is an enrollment credential of kind user, stored hashed
    info = await door.credentials.find_user("windows", windows.dev["username"])
    assert info is not None and info.kind == "user"


async def test_every_url_info_prints_is_served(windows: WindowsServer) -> None:
    dev = windows.dev
    urls = [*dev["cep"].values(), *dev["ces"].values(), *dev["adcs"]["cep"].values(), *dev["adcs"]["ces"].values()]
    for url in urls:
        rep = await windows.post(url, get_policies_body(security=windows.security()))
        # a CEP answers GetPolicies; a CES refuses it as the wrong action; Kerberos is a fault:
        # SOAP either way, never a 404
        assert rep.status in (200, 500), (url, rep.status)
        assert rep.headers["Content-Type"].startswith("application/soap+xml"), url


async def test_migrations_create_exactly_the_declared_tables(windows: WindowsServer) -> None:
    from protocols.windows import ces

    combined = MetaData(naming_convention=NAMING_CONVENTION)
    for declared in (schema.metadata, wssecurity.metadata, ces.metadata):
        for table in declared.tables.values():
            table.to_metadata(combined)
    names = set(combined.tables)

    def inspect(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_name": lambda name, type_, parent: type_ != "table" or name in names,
        })
        return set(context.get_current_heads()), compare_metadata(context, combined)

    async with windows.gw.store.engine.connect() as conn:
        heads, diffs = await conn.run_sync(inspect)
    assert any(h.startswith("windows_") for h in heads)
    assert names >= {"windows_policy_versions", "windows_usernametoken_nonces"}
    assert diffs == []
