"""``gateway est ...``: labels, users and trust anchors as an operator sets them up."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from conformance.harness import running_gateway
from gateway.cli import main
from gateway.clock import system_clock
from gateway.config import load_config
from gateway.credentials import Credentials
from gateway.errors import Unauthorized
from gateway.events import EventRecorder
from gateway.store import Store

from .helpers import EstServer, b64, core, device_certificate, http_post, make_csr, manufacturer_ca, raw_exchange


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def config_record(data_dir: Path, label: str):  # type: ignore[no-untyped-def]
    async def read():  # type: ignore[no-untyped-def]
        store = await Store.open(load_config(data_dir).store_url)
        try:
            async with store.read() as q:
                return await q.configs.get(label)
        finally:
            await store.close()
    return asyncio.run(read())


def user_verifies(data_dir: Path, label: str, username: str, password: str) -> bool:
    """Whether EST's enrollment credentials accept this user and password (as a request would)."""
    async def check() -> bool:
        store = await Store.open(load_config(data_dir).store_url)
        try:
            await Credentials(store, EventRecorder(store), system_clock, "est").verify(label, username, password)
            return True
        except Unauthorized:
            return False
        finally:
            await store.close()
    return asyncio.run(check())


def configuration_json(data_dir: Path, label: str) -> str:
    rec = config_record(data_dir, label)
    return json.dumps({"settings": rec.settings, "credentials": rec.credentials})


def test_operator_sets_up_a_factory_label(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(data_dir)]
    code, out, _ = run(capsys, "est", "list", "--json", *d)
    [dev] = json.loads(out)
    assert code == 0 and dev["label"] == "est" and dev["users"] == ["est"] and dev["default"] is True

    ca, ca_key, ca_path = manufacturer_ca(tmp_path)
    spec = tmp_path / "attrs.json"
    spec.write_text(json.dumps({"oids": ["challengePassword"], "template": {"key": "EC-P384"}}))
    code, out, err = run(capsys, "est", "create", "factory", "--profile", "device", "--auth", "certificate",
                         "--trust-anchor", str(ca_path), "--pop-linking", "required", "--csrattrs", str(spec), *d)
    assert code == 0 and "/.well-known/est/factory/" in out and "restart" in err
    assert "tls/est-factory-anchors.pem" in load_config(data_dir).tls.client_trust_anchors
    assert (data_dir / "tls" / "est-factory-anchors.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")

    code, password, _ = run(capsys, "est", "user", "add", "factory", "provisioner", *d)
    password = password.strip()
    assert code == 0 and len(password) >= 20
    assert user_verifies(data_dir, "factory", "provisioner", password)
    assert password not in configuration_json(data_dir, "factory")
    rec = config_record(data_dir, "factory")
    assert rec.settings["pop_linking"] == "required" and rec.settings["csrattrs"]["template"]["key"] == "EC-P384"

    assert run(capsys, "est", "set", "factory", "--approval", "manual", "--retry-after", "5", "--auth", "either", *d)[0] == 0
    rec = config_record(data_dir, "factory")
    assert (rec.settings["approval"], rec.settings["retry_after"], rec.settings["auth"]) == ("manual", 5, "either")

    code, _, err = run(capsys, "est", "set", "factory", "--retry-after", "0", *d)
    assert code == 1 and "retry_after" in err
    with pytest.raises(SystemExit):
        main(["est", "set", "factory", "--auth", "telepathy", *d])
    code, _, err = run(capsys, "est", "user", "remove", "factory", "nobody", *d)
    assert code == 1 and "no user" in err

    # The listener now trusts the maker's CA and the label accepts its devices.
    idevid = device_certificate(ca, ca_key, "SN-CLI", tmp_path)

    def linked_request(unique: bytes | None) -> bytes:
        csr, _ = make_csr("SN-CLI", challenge=base64.b64encode(unique or b"").decode())
        return http_post("/.well-known/est/factory/simpleenroll", b64(csr), {"Content-Type": "application/pkcs10"})

    async def enroll() -> tuple[int, int]:
        async with running_gateway(data_dir) as (gw, info):
            server = EstServer(gw, info, tmp_path)
            status, *_ = await raw_exchange(server, linked_request, cert=idevid)
            return status, len(await core(gw).requests(status="pending"))

    # No password sent: the maker's certificate authenticated, the CSR was linked to the
    # session, and the request waits for the operator as the label now says.
    assert asyncio.run(enroll()) == (202, 1)


def test_password_from_stdin_and_csrattrs_from_der(data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    d = ["--data-dir", str(data_dir)]
    raw = bytes.fromhex("300b06092a864886f70d010907")
    (tmp_path / "attrs.b64").write_bytes(base64.b64encode(raw) + b"\n")
    assert run(capsys, "est", "create", "lab", "--csrattrs", str(tmp_path / "attrs.b64"), "--default", *d)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("chosen-password\n"))
    code, out, _ = run(capsys, "est", "user", "add", "lab", "tech", "--password-stdin", *d)
    assert code == 0 and out == ""
    rec = config_record(data_dir, "lab")
    assert user_verifies(data_dir, "lab", "tech", "chosen-password")
    assert base64.b64decode(rec.settings["csrattrs"]["der"]) == raw
    assert rec.settings["default"] is True and "default" not in config_record(data_dir, "est").settings


def test_passwords_and_their_hashes_are_never_in_the_configuration(data_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The dev user made by ``gateway init`` and users added with the CLI are enrollment
    credentials: neither the password nor its hash is in the label's configuration JSON."""
    d = ["--data-dir", str(data_dir)]
    dev = next(e for e in json.loads(run(capsys, "info", "--json", *d)[1])["protocols"]["est"] if e["config"] == "est")
    assert user_verifies(data_dir, "est", dev["username"], dev["password"])
    assert dev["password"] not in configuration_json(data_dir, "est")
    assert "scrypt$" not in configuration_json(data_dir, "est")

    assert run(capsys, "est", "create", "line", *d)[0] == 0
    code, password, _ = run(capsys, "est", "user", "add", "line", "operator", *d)
    assert code == 0 and user_verifies(data_dir, "line", "operator", password.strip())
    code, again, _ = run(capsys, "est", "user", "add", "line", "operator", *d)  # a reset: new password
    assert code == 0 and user_verifies(data_dir, "line", "operator", again.strip())
    assert not user_verifies(data_dir, "line", "operator", password.strip())
    stored = configuration_json(data_dir, "line")
    assert password.strip() not in stored and again.strip() not in stored and "scrypt$" not in stored
    assert "operator" not in stored


def test_users_listed_disabled_enabled_unlocked_and_removed(data_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(data_dir)]
    assert run(capsys, "est", "create", "bench", *d)[0] == 0
    password = run(capsys, "est", "user", "add", "bench", "tech-1", *d)[1].strip()
    for _ in range(5):  # the default lockout: 5 wrong passwords
        assert not user_verifies(data_dir, "bench", "tech-1", "wrong password")

    def users() -> list[dict[str, object]]:
        code, out, _ = run(capsys, "est", "user", "list", "bench", "--json", *d)
        assert code == 0
        return json.loads(out)

    [row] = users()
    assert row["username"] == "tech-1" and row["locked"] is True and row["failures"] == 5
    assert "secret" not in json.dumps(row) and "scrypt" not in json.dumps(row)
    assert not user_verifies(data_dir, "bench", "tech-1", password)  # locked: even the right password
    assert run(capsys, "est", "user", "unlock", "bench", "tech-1", *d)[0] == 0
    assert users()[0]["locked"] is False and user_verifies(data_dir, "bench", "tech-1", password)

    assert run(capsys, "est", "user", "disable", "bench", "tech-1", *d)[0] == 0
    assert users()[0]["disabled"] is True and not user_verifies(data_dir, "bench", "tech-1", password)
    assert run(capsys, "est", "user", "enable", "bench", "tech-1", *d)[0] == 0
    assert user_verifies(data_dir, "bench", "tech-1", password)

    labels = {row["label"]: row for row in json.loads(run(capsys, "est", "list", "--json", *d)[1])}
    assert labels["bench"]["users"] == ["tech-1"]
    assert run(capsys, "est", "user", "remove", "bench", "tech-1", *d)[0] == 0
    assert users() == [] and not user_verifies(data_dir, "bench", "tech-1", password)
    code, _, err = run(capsys, "est", "user", "unlock", "bench", "tech-1", *d)
    assert code == 1 and "no user" in err
    code, _, err = run(capsys, "est", "user", "add", "bench", "x", *d)
    assert code == 1 and "user name" in err
