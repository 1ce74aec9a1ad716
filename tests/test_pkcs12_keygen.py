"""Server-side key generation to a PKCS#12 file, through the admin API and ``gateway
cert keygen``, against a real ``gateway serve``: the file opens with the real
``openssl pkcs12`` under the password and names the algorithms asked for (modern
PBES2/AES-256 or legacy 3DES), its key matches its certificate, and the issuance is
recorded like any other (certificate, end entity, ``keygen`` event with the actor,
``gateway_enrollments_total``). A bad password or an auditor key issues nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding, NoEncryption, PrivateFormat, PublicFormat, pkcs12,
)

from conformance.harness import GatewayInfo, GatewayProcess, require_client, run_cli

from .test_metrics import delta, sample, scrape

PASSWORD = "correct horse battery staple"
MODERN = "PBES2, PBKDF2, AES-256-CBC"
LEGACY = "pbeWithSHA1And3-KeyTripleDES-CBC"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    data_dir = tmp_path_factory.mktemp("keygen") / "data"
    run_cli("init", data_dir=data_dir)
    with GatewayProcess(data_dir) as info:
        yield info


@pytest.fixture(scope="module")
def auditor_key(live: GatewayInfo) -> str:
    out = run_cli("apikey", "create", "keygen-auditor", "--role", "auditor", data_dir=live.data_dir)
    return out.stdout.strip().splitlines()[-1]


async def call(info: GatewayInfo, method: str, path: str, body: Any = None,
               key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{info.https}/admin{path}", ssl=info.ssl_context(), json=body,
                                   headers={"Authorization": f"Bearer {key or info.api_key}"}) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def get_json(info: GatewayInfo, path: str) -> Any:
    status, _, body = await call(info, "GET", path)
    assert status == 200, body
    return json.loads(body)


def openssl_info(p12: Path, password: str, *extra: str) -> str:
    """What ``openssl pkcs12 -info`` prints about the file's encryption and MAC."""
    require_client("openssl")
    from .support import openssl

    proc = openssl("pkcs12", "-in", str(p12), "-info", "-noout", "-passin", f"pass:{password}", *extra)
    return proc.stdout + proc.stderr


def openssl_certs(p12: Path, password: str) -> str:
    from .support import openssl

    return openssl("pkcs12", "-in", str(p12), "-nokeys", "-info", "-passin", f"pass:{password}").stdout


def open_p12(data: bytes, password: str) -> tuple[Any, x509.Certificate, list[x509.Certificate], bytes | None]:
    loaded = pkcs12.load_pkcs12(data, password.encode())
    assert loaded.key is not None and loaded.cert is not None
    return loaded.key, loaded.cert.certificate, [c.certificate for c in loaded.additional_certs], \
        loaded.cert.friendly_name


def spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


async def certificate_total(info: GatewayInfo) -> int:
    return int((await get_json(info, "/certificates?limit=1"))["total"])


async def keygen_events(info: GatewayInfo) -> list[dict[str, Any]]:
    return list((await get_json(info, "/events?type=keygen&limit=500"))["items"])


async def assert_recorded(info: GatewayInfo, serial: str, actor_prefix: str, entity_name: str) -> None:
    cert = await get_json(info, f"/certificates/{serial}")
    assert cert["status"] == "valid" and cert["protocol_config"] == "est"
    entity = await get_json(info, f"/end-entities/{cert['entity']}")
    assert entity["name"] == entity_name and entity["protocol_config"] == "est"
    events = [e for e in await keygen_events(info) if e["serial"] == serial]
    assert len(events) == 1 and events[0]["status"] == "success"
    assert str(events[0]["detail"]["actor"]).startswith(actor_prefix)
    assert events[0]["entity"] == cert["entity"]


async def test_api_download_modern(live: GatewayInfo, tmp_path: Path) -> None:
    before = await scrape(live)
    status, headers, body = await call(live, "POST", "/protocol-configs/est/keygen", {
        "common_name": "printer-7.example.com", "sans": ["DNS:printer-7.example.com", "IP:10.0.0.7"],
        "password": PASSWORD,
    })
    assert status == 201, body
    assert headers["Content-Type"] == "application/x-pkcs12"
    serial = headers["X-Certificate-Serial"]
    assert headers["Location"] == f"/admin/certificates/{serial}"
    assert f'filename="{serial}.p12"' in headers["Content-Disposition"]
    p12 = tmp_path / "printer.p12"
    p12.write_bytes(body)
    described = openssl_info(p12, PASSWORD)
    assert MODERN in described and "PRF hmacWithSHA256" in described and "MAC: sha256" in described
    assert LEGACY not in described
    assert "friendlyName: printer-7.example.com" in openssl_certs(p12, PASSWORD)
    key, cert, chain, name = open_p12(body, PASSWORD)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and name == b"printer-7.example.com"
    assert spki(key.public_key()) == spki(cert.public_key())
    assert format(cert.serial_number, "x") == serial
    assert chain and chain[0].subject == cert.issuer
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["printer-7.example.com"]
    await assert_recorded(live, serial, "dev-admin", "printer-7.example.com")
    moved = delta(before, await scrape(live))
    assert moved.get(sample("gateway_enrollments_total", protocol="admin", configuration="est",
                            outcome="issued", reason="")) == 1
    # Neither the password nor the key is kept: not in the store, not in the server's log.
    stored = b"".join(p.read_bytes() for p in live.data_dir.glob("gateway.db*"))
    key_der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    assert PASSWORD.encode() not in stored and key_der not in stored
    assert key.private_numbers().private_value.to_bytes(32, "big") not in stored
    assert PASSWORD not in (live.data_dir.parent / f"{live.data_dir.name}-serve.log").read_text()


async def test_api_download_legacy(live: GatewayInfo, tmp_path: Path) -> None:
    status, headers, body = await call(live, "POST", "/protocol-configs/est/keygen", {
        "subject": "CN=old-phone,O=Example", "password": PASSWORD, "encryption": "legacy",
        "entity": "old-phone-42",
    })
    assert status == 201, body
    p12 = tmp_path / "old.p12"
    p12.write_bytes(body)
    described = openssl_info(p12, PASSWORD)
    assert LEGACY in described and "MAC: sha1" in described and "PBES2" not in described
    assert LEGACY in openssl_info(p12, PASSWORD, "-legacy")
    from .support import openssl

    wrong = openssl("pkcs12", "-in", str(p12), "-info", "-noout", "-passin", "pass:not the password", check=False)
    assert wrong.returncode != 0
    key, cert, _, name = open_p12(body, PASSWORD)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048  # old devices: RSA by default
    assert spki(key.public_key()) == spki(cert.public_key()) and name == b"old-phone"
    await assert_recorded(live, headers["X-Certificate-Serial"], "dev-admin", "old-phone-42")


@pytest.mark.parametrize("body", [
    {"common_name": "x.example.com"},
    {"common_name": "x.example.com", "password": "short"},
    {"common_name": "x.example.com", "password": "eight\x00chars"},
    {"common_name": "x.example.com", "password": 12345678},
    {"common_name": "x.example.com", "password": PASSWORD, "encryption": "rc2"},
    {"common_name": "x.example.com", "subject": "CN=x", "password": PASSWORD},
    {"subject": "not a name", "password": PASSWORD},
    {"common_name": "x.example.com", "sans": ["IP:not-an-ip"], "password": PASSWORD},
], ids=["missing", "short", "nul", "number", "encryption", "both-names", "bad-subject", "bad-san"])
async def test_bad_request_issues_nothing(live: GatewayInfo, body: dict[str, Any]) -> None:
    certs, events = await certificate_total(live), len(await keygen_events(live))
    status, _, answer = await call(live, "POST", "/protocol-configs/est/keygen", body)
    assert status == 400, answer
    assert json.loads(answer)["error"] == "bad_request"
    if "password" in body and isinstance(body["password"], str):
        assert body["password"] not in answer.decode()
    assert await certificate_total(live) == certs and len(await keygen_events(live)) == events


async def test_auditor_and_missing_configuration_are_refused(live: GatewayInfo, auditor_key: str) -> None:
    certs = await certificate_total(live)
    body = {"common_name": "x.example.com", "password": PASSWORD}
    status, _, answer = await call(live, "POST", "/protocol-configs/est/keygen", body, key=auditor_key)
    assert status == 403, answer
    status, _, answer = await call(live, "POST", "/protocol-configs/no-such/keygen", body)
    assert status == 404, answer
    assert await certificate_total(live) == certs


async def test_cli_keygen(live: GatewayInfo, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    for legacy, algorithm in ((False, MODERN), (True, LEGACY)):
        out = tmp_path / f"cli-{legacy}.p12"
        args = ["cert", "keygen", "--config", "est", "--cn", f"cli-dev-{legacy}", "--san",
                f"DNS:cli-dev-{legacy}.example.com", "--out", str(out), "--password-file", str(password_file)]
        result = run_cli(*args, *(["--legacy"] if legacy else []), data_dir=live.data_dir)
        assert out.stat().st_mode & 0o077 == 0
        assert algorithm in openssl_info(out, PASSWORD)
        key, cert, _, _ = open_p12(out.read_bytes(), PASSWORD)
        assert spki(key.public_key()) == spki(cert.public_key())
        serial = format(cert.serial_number, "x")
        assert serial in result.stdout
        await assert_recorded(live, serial, "cli:", f"cli-dev-{legacy}")


async def test_cli_refuses_a_short_password_before_issuing(live: GatewayInfo, tmp_path: Path) -> None:
    certs = await certificate_total(live)
    out = tmp_path / "never.p12"
    result = run_cli("cert", "keygen", "--config", "est", "--cn", "never", "--out", str(out),
                     data_dir=live.data_dir, check=False, env={"GATEWAY_PKCS12_PASSWORD": "short"})
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "password" in result.stderr
    assert "short" not in result.stderr and not out.exists()
    assert await certificate_total(live) == certs
