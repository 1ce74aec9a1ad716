"""Decommissioning an end entity offers to revoke its certificates (cessationOfOperation).

A real ``gateway serve``: certificates are enrolled over EST (one end entity per CSR
common name), the entity is decommissioned through the admin API or the CLI, and the
server's OCSP responder (asked by ``openssl ocsp``) and CRL say what became of them.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from conformance.harness import GatewayInfo, GatewayProcess, require_client, run_cli

from .support import make_csr, openssl


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    require_client("openssl")
    data_dir = tmp_path_factory.mktemp("decommission") / "data"
    run_cli("init", data_dir=data_dir)
    with GatewayProcess(data_dir) as info:
        yield info


def _request(info: GatewayInfo, method: str, url: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    ctx = ssl.create_default_context(cafile=info.tls_ca)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def admin(info: GatewayInfo, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {info.api_key}"}
    body = None
    if doc is not None:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        headers["Content-Type"] = "application/json"
    status, raw = _request(info, method, f"{info.data['admin']['url']}{path}", body, headers)
    return status, json.loads(raw) if raw else None


def est_enroll(info: GatewayInfo, name: str, tmp: Path) -> Path:
    """One certificate for end entity ``name`` over EST simpleenroll (HTTP Basic)."""
    est = info.data["protocols"]["est"][0]
    csr, _ = make_csr(name, [name])
    auth = base64.b64encode(f"{est['username']}:{est['password']}".encode()).decode()
    status, body = _request(
        info, "POST", f"{est['url']}/simpleenroll", base64.encodebytes(csr.public_bytes(Encoding.DER)),
        {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64",
         "Authorization": f"Basic {auth}"},
    )
    assert status == 200, body
    cert = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]
    path = tmp / f"{name}-{cert.serial_number:x}.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


def serial_of(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def entity_of(info: GatewayInfo, cert: Path) -> str:
    status, doc = admin(info, "GET", f"/certificates/{serial_of(cert)}")
    assert status == 200, doc
    return str(doc["entity"])


def ocsp(info: GatewayInfo, *certs: Path) -> str:
    ca = info.ca("issuing")
    args = [a for c in certs for a in ("-cert", str(c))]
    out = openssl("ocsp", "-issuer", ca["certificate"], *args, "-url", ca["ocsp"],
                  "-CAfile", info.ca("root")["certificate"], "-verify_other", ca["certificate"])
    assert "Response verify OK" in out.stdout + out.stderr
    return out.stdout


def statuses(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+): (good|revoked|unknown)$", output, re.M))


def test_decommission_with_revocation_revokes_every_certificate(served: GatewayInfo, tmp_path: Path) -> None:
    first = est_enroll(served, "decom-api.example.com", tmp_path)
    second = est_enroll(served, "decom-api.example.com", tmp_path)
    other = est_enroll(served, "bystander.example.com", tmp_path)
    entity = entity_of(served, first)
    assert entity_of(served, second) == entity != entity_of(served, other)

    status, doc = admin(served, "POST", f"/end-entities/{entity}/status",
                        {"status": "decommissioned", "revoke_certificates": True})
    assert status == 200, doc
    assert doc["status"] == "decommissioned"
    assert doc["certificates"] == {"revoked": 2, "failed": 0, "remaining_valid": 0}

    out = ocsp(served, first, second, other)
    assert statuses(out) == {str(first): "revoked", str(second): "revoked", str(other): "good"}
    assert out.count("Reason: cessationOfOperation") == 2
    # the CRL from the CDP lists both, with the reason
    with urllib.request.urlopen(served.ca("issuing")["crl"], timeout=10) as resp:
        (tmp_path / "ca.crl").write_bytes(resp.read())
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "ca.crl"), "-noout", "-text").stdout
    flat = text.upper().replace(":", "")
    assert serial_of(first).upper() in flat and serial_of(second).upper() in flat
    assert serial_of(other).upper() not in flat and "Cessation Of Operation" in text
    # each revocation is audited against the entity, by the key that asked
    status, events = admin(served, "GET", f"/events?type=revoke&entity={entity}")
    assert status == 200, events
    revoked = {e["serial"]: e["detail"] for e in events["items"] if e["status"] == "success"}
    assert set(revoked) == {serial_of(first), serial_of(second)}
    assert {d.get("reason") for d in revoked.values()} == {"cessation_of_operation"}
    assert all(d.get("actor") for d in revoked.values())
    # asking again finds nothing left to revoke
    status, doc = admin(served, "POST", f"/end-entities/{entity}/status",
                        {"status": "decommissioned", "revoke_certificates": True})
    assert status == 200 and doc["certificates"] == {"revoked": 0, "failed": 0, "remaining_valid": 0}


def test_decommission_without_revocation_says_how_many_stay_valid(served: GatewayInfo, tmp_path: Path) -> None:
    first = est_enroll(served, "decom-keep.example.com", tmp_path)
    second = est_enroll(served, "decom-keep.example.com", tmp_path)
    entity = entity_of(served, first)
    status, doc = admin(served, "POST", f"/end-entities/{entity}/status", {"status": "decommissioned"})
    assert status == 200, doc
    assert doc["status"] == "decommissioned"
    assert doc["certificates"] == {"revoked": 0, "failed": 0, "remaining_valid": 2}
    assert statuses(ocsp(served, first, second)) == {str(first): "good", str(second): "good"}


@pytest.mark.parametrize("body", [
    {"status": "decommissioned", "revoke_certificates": "yes"},
    {"status": "decommissioned", "revoke_certificates": 1},
    {"status": "decommissioned", "revoke_certificates": None},
    {"status": "inactive", "revoke_certificates": True},
])
def test_bad_revoke_option_is_400_and_changes_nothing(served: GatewayInfo, tmp_path: Path, body: Any) -> None:
    name = f"decom-bad-{abs(hash(json.dumps(body))) % 10**8}.example.com"
    cert = est_enroll(served, name, tmp_path)
    entity = entity_of(served, cert)
    status, doc = admin(served, "POST", f"/end-entities/{entity}/status", body)
    assert status == 400, doc
    assert "revoke_certificates" in doc["detail"]
    status, doc = admin(served, "GET", f"/end-entities/{entity}")
    assert status == 200 and doc["status"] == "active"
    assert statuses(ocsp(served, cert)) == {str(cert): "good"}
    # what was refused is the value, not the option: a well-formed one is taken
    status, doc = admin(served, "POST", f"/end-entities/{entity}/status",
                        {"status": "decommissioned", "revoke_certificates": True})
    assert status == 200 and doc["certificates"]["revoked"] == 1, doc


def test_the_schema_documents_the_option(served: GatewayInfo) -> None:
    status, doc = admin(served, "GET", "/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    assert schemas["EndEntityStatus"]["properties"]["revoke_certificates"]["type"] == "boolean"
    op = doc["paths"]["/end-entities/{id}/status"]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("EndEntityStatusChange")


def test_cli_offers_and_does_the_revocation(served: GatewayInfo, tmp_path: Path) -> None:
    first = est_enroll(served, "decom-cli.example.com", tmp_path)
    second = est_enroll(served, "decom-cli.example.com", tmp_path)
    entity = entity_of(served, first)
    listed = json.loads(run_cli("entity", "list", "--json", data_dir=served.data_dir).stdout)
    assert {"id": entity, "name": "decom-cli.example.com", "kind": "device", "status": "active",
            "config": "est"} in listed

    offered = run_cli("entity", "status", entity, "decommissioned", data_dir=served.data_dir)
    assert "is decommissioned" in offered.stdout
    assert "2 certificate(s) remain valid (add --revoke-certificates" in offered.stdout
    assert statuses(ocsp(served, first, second)) == {str(first): "good", str(second): "good"}

    done = run_cli("entity", "status", entity, "decommissioned", "--revoke-certificates", data_dir=served.data_dir)
    assert "revoked 2 certificate(s) (cessationOfOperation)" in done.stdout and "remain valid" not in done.stdout
    out = ocsp(served, first, second)
    assert statuses(out) == {str(first): "revoked", str(second): "revoked"}
    assert out.count("Reason: cessationOfOperation") == 2

    bad = run_cli("entity", "status", entity, "active", data_dir=served.data_dir, check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "cannot be reactivated" in bad.stderr
    wrong = run_cli("entity", "status", entity, "inactive", "--revoke-certificates", data_dir=served.data_dir,
                    check=False)
    assert wrong.returncode == 1 and "revoke_certificates applies only" in wrong.stderr
