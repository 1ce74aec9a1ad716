"""``gateway windows ...`` and ``/admin/windows/<config>/users`` as a Windows admin uses them:
a configuration and a user made without editing JSON, then the simulator enrolling with that
user over the real CES UsernamePassword endpoint while the gateway runs; disabling and
removing the user shut it out with the SOAP fault; bad input is one line and exit 1."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, require_client, running_gateway
from conformance.windows.simulator import PKCS10, USERNAME, SoapFaultError, WindowsClientSimulator, pkcs10, rsa_key
from gateway.cli import main
from gateway.runtime import Gateway
from gateway.store.records import CertificateFilter

from .helpers import SoapReply


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["windows", *args, "--data-dir", str(data_dir)])
    out = capsys.readouterr()
    return code, out.out, out.err


async def run_async(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    """The CLI against the data directory of a gateway that keeps serving (its own event loop)."""
    return await asyncio.to_thread(run, capsys, data_dir, *args)


@pytest.fixture
def data_dir(windows_data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(windows_data_dir, target)
    return target


@pytest.fixture
async def served(data_dir: Path) -> AsyncIterator[tuple[Gateway, GatewayInfo]]:
    async with running_gateway(data_dir) as (gw, info):
        yield gw, info


def on(info: GatewayInfo, url: str) -> str:
    """A URL the CLI printed (configured port), on the port this test's gateway listens on."""
    return info.https + urlsplit(url).path


async def issued(gw: Gateway, config: str) -> int:
    async with gw.store.read() as q:
        return await q.certificates.count(CertificateFilter(protocol_config=config))


def fault_subcode(exc: SoapFaultError) -> str | None:
    return SoapReply(exc.status, {}, exc.body).fault_subcode


def subject(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


async def test_admin_creates_config_and_user_then_windows_enrolls_until_disabled_or_removed(
    served: tuple[Gateway, GatewayInfo], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    require_client("openssl")
    gw, info = served
    code, out, _ = await run_async(capsys, data_dir, "config", "create", "corp", "--template", "CorpUser",
                                   "--computer-template", "CorpComputer", "--restricted")
    assert code == 0 and "/windows/corp/cep/username" in out
    code, password, _ = await run_async(capsys, data_dir, "user", "add", "alice", "--config", "corp",
                                        "--template", "CorpUser")
    password = password.strip()
    assert code == 0 and len(password) >= 20
    code, out, _ = await run_async(capsys, data_dir, "config", "show", "corp", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["users"] == ["alice"] and shown["templates"] == ["CorpUser", "CorpComputer"]
    cep, ces = on(info, shown["cep"]["username"]), on(info, shown["ces"]["username"])
    code, text, _ = await run_async(capsys, data_dir, "config", "show", "corp")
    assert code == 0 and shown["cep"]["username"] in text and "certutil -f -PolicyServer" in text

    # Windows (the simulator): the policy offers what alice may use, the CES issues it
    sim = WindowsClientSimulator(info.tls_ca, tmp_path, username="alice", password=password)
    policy = await sim.get_policies(cep, USERNAME)
    assert [t.name for t in policy.templates] == ["CorpUser"]  # --restricted: what 'user add --template' granted
    user = policy.template("CorpUser")
    assert user.enroll
    cauri = policy.cauri(user, USERNAME)
    assert cauri.uri == ces
    key = rsa_key(user.min_key_bits)
    csr = pkcs10(user, key, subject("alice")).public_bytes(Encoding.DER)
    got = await sim.request(cauri, csr, PKCS10)
    assert got.disposition == "Issued"
    sim.install("alice", got, key, Path(info.ca("root")["certificate"]))
    assert await issued(gw, "corp") == 1

    # disabled: the CES refuses with the WS-Security fault, nothing is issued
    assert (await run_async(capsys, data_dir, "user", "disable", "alice", "--config", "corp"))[0] == 0
    with pytest.raises(SoapFaultError) as refused:
        await sim.request(cauri, csr, PKCS10)
    assert refused.value.status == 500 and fault_subcode(refused.value) == "FailedAuthentication"
    code, out, _ = await run_async(capsys, data_dir, "user", "list", "--config", "corp", "--json")
    assert [(u["username"], u["disabled"], u["templates"]) for u in json.loads(out)] == [("alice", True, ["CorpUser"])]

    assert (await run_async(capsys, data_dir, "user", "enable", "alice", "--config", "corp"))[0] == 0
    assert (await sim.request(cauri, csr, PKCS10)).disposition == "Issued"

    # the shared lockout: five wrong passwords lock alice out, 'unlock' lets her in again
    guesser = WindowsClientSimulator(info.tls_ca, tmp_path, username="alice", password="wrong-password")
    for _ in range(5):
        with pytest.raises(SoapFaultError):
            await guesser.get_policies(cep, USERNAME)
    with pytest.raises(SoapFaultError):
        await sim.get_policies(cep, USERNAME)
    code, out, _ = await run_async(capsys, data_dir, "user", "list", "--config", "corp", "--json")
    assert json.loads(out)[0]["locked"] is True
    assert (await run_async(capsys, data_dir, "user", "unlock", "alice", "--config", "corp"))[0] == 0
    assert [t.name for t in (await sim.get_policies(cep, USERNAME)).templates] == ["CorpUser"]

    # removed: refused, and out of the template's enroll list
    assert (await run_async(capsys, data_dir, "user", "remove", "alice", "--config", "corp"))[0] == 0
    with pytest.raises(SoapFaultError) as refused:
        await sim.request(cauri, csr, PKCS10)
    assert refused.value.status == 500 and fault_subcode(refused.value) == "FailedAuthentication"
    assert await issued(gw, "corp") == 2
    code, out, _ = await run_async(capsys, data_dir, "template", "list", "--config", "corp", "--json")
    assert {t["name"]: t["enroll"] for t in json.loads(out)} == {"CorpUser": [], "CorpComputer": []}


def test_bad_input_is_one_line_and_exit_1_and_changes_nothing(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(capsys, data_dir, "user", "add", "bob")[0] == 0
    for args in (("user", "add", "bob"),  # duplicate
                 ("user", "add", "bad name"), ("user", "add", "x:y"), ("user", "add", "**"), ("user", "add", "é1"),
                 ("user", "add", "carol", "--template", "NoSuchTemplate"),
                 ("user", "remove", "nobody"), ("user", "disable", "nobody"),
                 ("user", "list", "--config", "nosuch"),
                 ("config", "create", "Bad!"), ("config", "create", "lab", "--template", "LabUser:no-such-profile"),
                 ("config", "create", "lab2", "--oid-arc", "not.an.oid"),
                 ("config", "create", "windows")):  # exists
        code, out, err = run(capsys, data_dir, *args)
        assert code == 1 and out == "" and err.startswith("gateway: error: ") and err.count("\n") == 1, (args, err)
    code, out, _ = run(capsys, data_dir, "user", "list", "--json")
    assert [u["username"] for u in json.loads(out)] == ["bob", "windows"]
    code, out, _ = run(capsys, data_dir, "config", "list", "--json")
    assert [c["config"] for c in json.loads(out)] == ["windows"]

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, out, err = run(capsys, data_dir, "user", "add", "dave", "--password-stdin")
    assert code == 1 and "8-1024" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("a chosen password\n"))
    code, out, err = run(capsys, data_dir, "user", "add", "dave", "--password-stdin")
    assert code == 0 and out == ""  # nothing to show: the admin chose it


def test_template_list_and_adcs_paths_move(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, data_dir, "template", "list", "--json")
    rows = {t["name"]: t for t in json.loads(out)}
    assert code == 0 and set(rows) == {"GatewayUser", "GatewayComputer"}
    assert rows["GatewayUser"]["profile"] == "windows-user" and rows["GatewayUser"]["enroll"] == ["*"]
    assert rows["GatewayComputer"]["kind"] == "computer" and rows["GatewayUser"]["oid"].startswith("1.3.6.1.4.1.311.21.8.")

    arc = "1.3.6.1.4.1.311.21.8.1.2.3.4.5.6.7.8"
    assert run(capsys, data_dir, "config", "create", "corp", "--adcs-paths", "--oid-arc", arc)[0] == 0
    code, out, _ = run(capsys, data_dir, "config", "list", "--json")
    listed = {c["config"]: c for c in json.loads(out)}
    assert listed["corp"]["adcs_paths"] is True and listed["windows"]["adcs_paths"] is False
    assert "/ADPolicyProvider_CEP_UsernamePassword/service.svc/CEP" in listed["corp"]["policy_url"]
    code, out, _ = run(capsys, data_dir, "template", "list", "--config", "corp", "--json")
    assert [t["oid"] for t in json.loads(out)] == [f"{arc}.1", f"{arc}.2"]


# --- admin API ----------------------------------------------------------------------------------


class Api:
    def __init__(self, session: aiohttp.ClientSession, info: GatewayInfo) -> None:
        self.session, self.base, self.key = session, info.data["admin"]["url"], info.api_key

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {self.key}"}}
        if body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if resp.content_type == "application/json" else raw


async def test_admin_api_manages_users_that_then_authenticate(served: tuple[Gateway, GatewayInfo],
                                                             tmp_path: Path) -> None:
    gw, info = served
    dev = next(e for e in info.data["protocols"]["xcep"] if e["config"] == "windows")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context())) as session:
        api = Api(session, info)
        status, made = await api.call("POST", "/windows/windows/users",
                                      {"username": "erin@corp.example", "templates": ["GatewayUser"]})
        assert status == 201 and made["username"] == "erin@corp.example" and len(made["password"]) >= 20
        assert made["templates"] == ["GatewayUser", "GatewayComputer"]  # the dev templates let everyone in

        sim = WindowsClientSimulator(info.tls_ca, tmp_path, username="erin@corp.example", password=made["password"])
        policy = await sim.get_policies(dev["cep"]["username"], USERNAME)
        assert policy.template("GatewayUser").enroll

        for body, expect in (({"username": "erin@corp.example"}, 409), ({"username": "bad name"}, 400),
                             ({"username": "frank", "templates": ["Nope"]}, 404),
                             ({"username": "frank", "password": "short"}, 400)):
            status, problem = await api.call("POST", "/windows/windows/users", body)
            assert status == expect, (body, status, problem)
        status, _ = await api.call("POST", "/windows/nosuch/users", {"username": "frank"})
        assert status == 404
        status, listed = await api.call("GET", "/windows/windows/users")
        assert status == 200 and [u["username"] for u in listed["items"]] == ["erin@corp.example", "windows"]
        assert "password" not in listed["items"][0]

        status, _ = await api.call("DELETE", "/windows/windows/users/erin@corp.example")
        assert status == 204
        with pytest.raises(SoapFaultError) as refused:
            await sim.get_policies(dev["cep"]["username"], USERNAME)
        assert fault_subcode(refused.value) == "FailedAuthentication"
        status, _ = await api.call("DELETE", "/windows/windows/users/erin@corp.example")
        assert status == 404
        settings = (await gw.door("windows").configuration("windows")).settings
        assert all("erin@corp.example" not in t.get("enroll", []) for t in settings["templates"])
