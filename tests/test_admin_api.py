"""The admin API against a real gateway: SQLite store, real CAs, real crypto.

Every JSON response is also validated against the schema the OpenAPI document
declares for its route and status, so the document cannot drift from the code.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from openapi_spec_validator import validate

from gateway.admin import create_admin_app
from gateway.admin.api import ROUTES
from gateway.admin.auth import client_certificate_record
from gateway.ca.backend import IssuedCertificate, PendingRequest
from gateway.config import Config
from gateway.errors import Forbidden
from gateway.runtime import Gateway
from gateway.secrets import api_key_hash
from gateway.store.records import ApiKeyRecord

API_KEY = "test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
OTHER_KEY = "revoked-admin-key-0123456789abcdefghijklmnopqrstuvwx"
PATH_VALUES = {"id": "root", "serial": "1a2b", "name": "tls-server"}


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture
async def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", "admin-api-test-passphrase")
    gateway = await Gateway.open(Config(data_dir=tmp_path))
    await gateway.cas.hierarchy.create_root("root", "Test Root", "EC-P256")
    await gateway.cas.load()
    await gateway.cas.hierarchy.create_intermediate(
        await gateway.cas.local("root"), "issuing", "Test Issuing CA", "EC-P256"
    )
    await gateway.cas.load()
    async with gateway.store.transaction() as q:
        await q.api_keys.insert(ApiKeyRecord(id="k1", name="ops", key_sha256=api_key_hash(API_KEY)))
        await q.api_keys.insert(
            ApiKeyRecord(id="k2", name="former", key_sha256=api_key_hash(OTHER_KEY), revoked=True)
        )
    await gateway.authority.create_config("est1", "est", "issuing", ["tls-server", "device"])
    try:
        yield gateway
    finally:
        await gateway.close()


@dataclass
class Result:
    status: int
    headers: Any
    content_type: str
    body: bytes
    data: Any


def _schema_for(doc: dict[str, Any], method: str, path: str, status: int, content_type: str) -> dict[str, Any] | None:
    """The schema the document declares for this response; fails on undocumented ones."""
    candidates = sorted(doc["paths"].items(), key=lambda kv: kv[0].count("{"))
    for template, ops in candidates:
        if method.lower() in ops and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            responses = ops[method.lower()]["responses"]
            assert str(status) in responses, f"{method} {template}: status {status} is not documented"
            response = responses[str(status)]
            if "$ref" in response:
                response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            content = response.get("content", {})
            if status == 204:
                return None
            assert content_type in content, f"{method} {template} {status}: {content_type} not documented"
            return content[content_type]["schema"]
    raise AssertionError(f"{method} {path} matches no documented operation")


class Admin:
    """A test client that authenticates, checks the status, and validates against the document."""

    def __init__(self, client: Any, doc: dict[str, Any]) -> None:
        self.client = client
        self.doc = doc

    async def call(
        self, method: str, path: str, expect: int, *, json_body: Any = None, params: Any = None,
        headers: dict[str, str] | None = None, auth: bool = True, data: Any = None,
    ) -> Result:
        h = {"Authorization": f"Bearer {API_KEY}"} if auth else {}
        h.update(headers or {})
        kwargs: dict[str, Any] = {"headers": h, "params": params}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        async with self.client.request(method, path, **kwargs) as resp:
            body = await resp.read()
            assert resp.status == expect, f"{method} {path}: {resp.status} {body[:400]!r}"
            parsed = json.loads(body) if resp.content_type == "application/json" else None
            schema = _schema_for(self.doc, method, path, resp.status, resp.content_type)
            if schema is not None and parsed is not None:
                jsonschema.Draft202012Validator({**schema, "components": self.doc["components"]}).validate(parsed)
            return Result(resp.status, resp.headers, resp.content_type, body, parsed)

    async def get(self, path: str, expect: int = 200, **kw: Any) -> Any:
        return (await self.call("GET", path, expect, **kw)).data

    async def post(self, path: str, body: Any = None, expect: int = 200, **kw: Any) -> Any:
        return (await self.call("POST", path, expect, json_body=body, **kw)).data


@pytest.fixture
async def app(gw: Gateway) -> web.Application:
    return create_admin_app(gw)


@pytest.fixture
async def admin(app: web.Application, aiohttp_client: Any) -> Admin:
    client = await aiohttp_client(app)
    async with client.get("/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    return Admin(client, doc)


def make_csr(cn: str = "www.example.test", sans: tuple[str, ...] = ("www.example.test",),
             key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


async def issue(admin: Admin, cn: str = "www.example.test", profile: str = "tls-server", ca: str = "issuing") -> dict[str, Any]:
    return await admin.post(
        "/certificates", {"ca": ca, "profile": profile, "csr": make_csr(cn, (cn,))}, expect=201
    )


def fill(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PATH_VALUES[m.group(1)], path)


async def crl_of(admin: Admin, ca: str, **params: str) -> x509.CertificateRevocationList:
    res = await admin.call("GET", f"/cas/{ca}/crl", 200, params=params or None)
    assert res.content_type == "application/pkix-crl"
    return x509.load_der_x509_crl(res.body)


# --- the document ----------------------------------------------------------------------


async def test_openapi_validates_and_lists_every_registered_route(app: web.Application, admin: Admin) -> None:
    doc = admin.doc
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "description": "An admin API key."}
    assert schemes["apiKeyHeader"]["in"] == "header" and schemes["apiKeyHeader"]["name"] == "X-API-Key"
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert registered == documented
    assert len(registered) == 42  # + API keys and PKCS#12 keygen (issue 11), outbox and destinations (16), statistics and console users (19)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path == "/openapi.json":
                assert op["security"] == []
            else:
                assert "security" not in op  # inherits the document's key/cert requirement
                assert "401" in op["responses"], (method, path)
            assert "400" in op["responses"] and "500" in op["responses"]


# --- authentication ----------------------------------------------------------------------


PROTECTED = [r for r in ROUTES if not r.public]


@pytest.mark.parametrize("route", PROTECTED, ids=[f"{r.method} {r.path}" for r in PROTECTED])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": "wrong-key"},
     {"Authorization": f"Basic {API_KEY}"}, {"Authorization": f"Bearer {OTHER_KEY}"}],
    ids=["none", "wrong-bearer", "wrong-x-api-key", "not-bearer", "revoked-key"],
)
async def test_every_route_refuses_missing_or_wrong_credentials(admin: Admin, route: Any, headers: dict[str, str]) -> None:
    body = {} if route.method in ("POST", "PATCH") else None
    res = await admin.call(route.method, fill(route.path), 401, json_body=body, headers=headers, auth=False)
    assert res.headers["WWW-Authenticate"] == 'Bearer realm="gateway-admin"'
    assert res.data["error"] == "unauthorized" and res.data["detail"]


async def test_refused_request_changes_nothing(admin: Admin, gw: Gateway) -> None:
    await admin.call("POST", "/cas", 401, json_body={"kind": "root", "id": "sneaky", "name": "Sneaky"},
                     headers={"X-API-Key": "guess"}, auth=False)
    async with gw.store.read() as q:
        assert await q.cas.get("sneaky") is None


async def test_both_key_headers_are_accepted(admin: Admin) -> None:
    by_bearer = await admin.get("/cas")
    by_header = await admin.get("/cas", auth=False, headers={"X-API-Key": API_KEY})
    assert by_bearer == by_header
    assert [c["id"] for c in by_bearer["items"]] == ["root", "issuing"]


# --- CAs and profiles ----------------------------------------------------------------------


def _external_root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Outside Root")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return key, cert


async def test_ca_lifecycle(admin: Admin) -> None:
    root = await admin.get("/cas/root")
    assert root["kind"] == "root" and root["can_issue"] and root["parent"] is None
    assert x509.load_pem_x509_certificate(root["certificate_pem"].encode()).subject.rfc4514_string() == "CN=Test Root"
    issuing = await admin.get("/cas/issuing")
    assert issuing["parent"] == "root"
    chain = x509.load_pem_x509_certificates(issuing["chain_pem"].encode())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=Test Root"]
    await admin.get("/cas/nope", expect=404)

    made = await admin.post("/cas", {"kind": "root", "id": "root2", "name": "Second Root",
                                     "key_algorithm": "EC-P384", "validity_days": 400}, expect=201)
    assert made["state"] == "active" and made["key_algorithm"] == "EC-P384"
    sub = await admin.post("/cas", {"kind": "intermediate", "id": "sub2", "name": "Second Sub",
                                    "parent": "root2"}, expect=201)
    sub_cert = x509.load_pem_x509_certificate(sub["certificate_pem"].encode())
    root2_cert = x509.load_pem_x509_certificate(made["certificate_pem"].encode())
    sub_cert.verify_directly_issued_by(root2_cert)
    await issue(admin, "via-sub2.example.test", ca="sub2")  # the registry was reloaded

    await admin.post("/cas", {"kind": "root", "id": "root2", "name": "Again"}, expect=409)
    await admin.post("/cas", {"kind": "pyramid", "id": "x1", "name": "X"}, expect=400)
    await admin.post("/cas", {"kind": "root", "id": "x2"}, expect=400)
    await admin.post("/cas", {"kind": "root", "id": "x3", "name": "X", "colour": "red"}, expect=400)
    await admin.post("/cas", {"kind": "root", "id": "x4", "name": "X", "validity_days": "ten"}, expect=400)
    await admin.post("/cas", {"kind": "root", "id": "x5", "name": "X", "key_algorithm": "RSA-1024"}, expect=400)
    await admin.post("/cas", {"kind": "intermediate", "id": "x6", "name": "X", "parent": "nope"}, expect=404)

    # An externally signed CA: CSR out, signed certificate and chain back in.
    pending = await admin.post("/cas", {"kind": "external_csr", "id": "ext", "name": "External Sub"}, expect=201)
    assert pending["state"] == "awaiting_certificate" and not pending["can_issue"]
    csr = x509.load_pem_x509_csr(pending["csr_pem"].encode())
    await admin.post("/certificates", {"ca": "ext", "profile": "tls-server", "csr": make_csr()}, expect=503)
    outside_key, outside_root = _external_root()
    now = dt.datetime.now(dt.timezone.utc)
    signed = (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(outside_root.subject)
        .public_key(csr.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(outside_key, hashes.SHA384())
    )
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    await admin.post("/cas/ext/certificate", {"certificate": pem(signed)}, expect=400)
    await admin.post("/cas/ext/certificate", {"certificate": pem(outside_root), "chain": pem(outside_root)}, expect=403)
    active = await admin.post("/cas/ext/certificate", {"certificate": pem(signed), "chain": pem(outside_root)})
    assert active["state"] == "active" and active["can_issue"]
    await admin.post("/cas/ext/certificate", {"certificate": pem(signed), "chain": pem(outside_root)}, expect=409)
    issued = await issue(admin, "via-ext.example.test", ca="ext")
    assert x509.load_pem_x509_certificate(issued["chain"][0].encode()) == signed

    imported = await admin.post("/cas", {"kind": "external_root", "id": "outside", "name": "Outside",
                                         "certificate": pem(outside_root)}, expect=201)
    assert imported["kind"] == "external_root" and not imported["can_issue"]
    await admin.get("/cas/outside/crl", expect=503)

    listing = await admin.get("/cas", params={"kind": "external_root"})
    assert [c["id"] for c in listing["items"]] == ["outside"] and listing["total"] == 1
    page = await admin.get("/cas", params={"limit": "2", "offset": "1"})
    assert len(page["items"]) == 2 and page["total"] == 6 and page["next_offset"] == 3


async def test_profiles(admin: Admin) -> None:
    listing = await admin.get("/profiles")
    names = [p["name"] for p in listing["items"]]
    assert {"tls-server", "device", "sub-ca"} <= set(names) and names == sorted(names)
    tls = await admin.get("/profiles/tls-server")
    assert tls["extended_key_usage"] == ["server_auth"]
    assert tls["validity"] == "P90D" and tls["san"]["required"] is True
    assert "EC-P256" in tls["key_algorithms"]
    await admin.get("/profiles/no-such-profile", expect=404)


# --- protocol configurations ------------------------------------------------------------------


async def test_protocol_configuration_lifecycle(admin: Admin, gw: Gateway) -> None:
    made = await admin.post("/protocol-configs", {
        "id": "scep1", "protocol": "scep", "ca": "issuing", "profiles": ["device"],
        "settings": {"approval": "auto", "note": "lab"},
    }, expect=201)
    assert made["default_profile"] == "device" and made["enabled"] is True
    await admin.post("/protocol-configs", {"id": "scep1", "protocol": "scep", "ca": "issuing",
                                           "profiles": ["device"]}, expect=409)
    await admin.post("/protocol-configs", {"id": "Bad Id!", "protocol": "scep", "ca": "issuing",
                                           "profiles": ["device"]}, expect=400)
    await admin.post("/protocol-configs", {"id": "x1", "protocol": "carrier-pigeon", "ca": "issuing",
                                           "profiles": ["device"]}, expect=400)
    await admin.post("/protocol-configs", {"id": "x2", "protocol": "scep", "ca": "issuing",
                                           "profiles": "device"}, expect=400)
    await admin.post("/protocol-configs", {"id": "x3", "protocol": "scep", "ca": "issuing",
                                           "profiles": ["device"], "settings": {"approval": "sometimes"}}, expect=400)

    assert [c["id"] for c in (await admin.get("/protocol-configs", params={"protocol": "scep"}))["items"]] == ["scep1"]
    assert {c["id"] for c in (await admin.get("/protocol-configs"))["items"]} == {"est1", "scep1"}
    assert (await admin.get("/protocol-configs/est1"))["profiles"] == ["tls-server", "device"]

    patch = lambda body, expect=200: admin.call("PATCH", "/protocol-configs/scep1", expect, json_body=body)  # noqa: E731
    updated = (await patch({"enabled": False, "settings": {"note": None, "approval": "manual"}})).data
    assert updated["enabled"] is False and updated["settings"] == {"approval": "manual"}
    with pytest.raises(Forbidden):
        await gw.authority.config("scep1", "scep")
    await patch({"profiles": ["tls-server"]}, 400)  # the default would no longer be offered
    updated = (await patch({"profiles": ["tls-server", "user"], "default_profile": "user", "enabled": True})).data
    assert updated["default_profile"] == "user" and updated["profiles"] == ["tls-server", "user"]
    assert (await gw.authority.config("scep1", "scep")).enabled
    await patch({"profiles": ["no-such"], "default_profile": "no-such"}, 400)
    await patch({"enabled": "yes"}, 400)
    await patch({"ca": "root"}, 400)
    await admin.call("PATCH", "/protocol-configs/nope", 404, json_body={"enabled": False})

    await admin.call("DELETE", "/protocol-configs/scep1", 204)
    await admin.get("/protocol-configs/scep1", expect=404)
    await admin.call("DELETE", "/protocol-configs/scep1", 404)
    events = await admin.get("/events", params={"protocol_config": "scep1"})
    types = [e["type"] for e in events["items"]]
    assert types[:2] == ["config_delete", "config_update"] and "config_create" in types
    assert events["items"][0]["detail"]["actor"] == "ops"


# --- certificates ----------------------------------------------------------------------------


async def test_issue_then_get_list_filter_download(admin: Admin) -> None:
    issued = await issue(admin, "www.example.test")
    cert = x509.load_pem_x509_certificate(issued["pem"].encode())
    serial = format(cert.serial_number, "x")
    assert issued["serial"] == serial and issued["status"] == "valid" and issued["ca"] == "issuing"
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in issued["chain"]]
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=Test Issuing CA", "CN=Test Root"]
    cert.verify_directly_issued_by(chain[0])
    await issue(admin, "other.example.test")
    await issue(admin, "gadget-7", profile="device")

    got = await admin.get(f"/certificates/{serial}")
    assert got["subject"] == "CN=www.example.test" and got["sans"] == ["DNS:www.example.test"]
    assert got["profile"] == "tls-server" and got["pem"] == issued["pem"] and not got["expired"]
    colon = ":".join(re.findall("..", serial.zfill(len(serial) + len(serial) % 2))).upper()
    assert (await admin.get(f"/certificates/{colon}"))["serial"] == serial
    await admin.get("/certificates/abc123", expect=404)
    await admin.get("/certificates/not-hex", expect=400)

    everything = await admin.get("/certificates")
    assert everything["total"] == 4  # the three above and the issuing CA's own certificate
    by_ca = await admin.get("/certificates", params={"ca": "issuing"})
    assert by_ca["total"] == 3
    by_profile = await admin.get("/certificates", params={"profile": "tls-server"})
    assert {c["subject"] for c in by_profile["items"]} == {"CN=www.example.test", "CN=other.example.test"}
    by_subject = await admin.get("/certificates", params={"subject": "WWW.EXAMPLE"})
    assert [c["serial"] for c in by_subject["items"]] == [serial] and "pem" not in by_subject["items"][0]
    assert (await admin.get("/certificates", params={"status": "revoked"}))["total"] == 0
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=100)).isoformat()
    expiring = await admin.get("/certificates", params={"expires_before": soon, "ca": "issuing"})
    assert expiring["total"] == 2  # the 90-day TLS certificates, not the one-year device one
    assert (await admin.get("/certificates", params={"expires_before": "2000-01-01"}))["total"] == 0
    first = await admin.get("/certificates", params={"limit": "1", "ca": "issuing"})
    assert len(first["items"]) == 1 and first["next_offset"] == 1 and first["total"] == 3
    last = await admin.get("/certificates", params={"limit": "2", "offset": "2", "ca": "issuing"})
    assert len(last["items"]) == 1 and last["next_offset"] is None

    pem = await admin.call("GET", f"/certificates/{serial}/pem", 200)
    assert pem.content_type == "application/x-pem-file"
    assert x509.load_pem_x509_certificate(pem.body) == cert
    with_chain = await admin.call("GET", f"/certificates/{serial}/pem", 200, params={"chain": "true"})
    assert x509.load_pem_x509_certificates(with_chain.body) == [cert, *chain]
    der = await admin.call("GET", f"/certificates/{serial}/der", 200)
    assert der.content_type == "application/pkix-cert"
    assert der.body == cert.public_bytes(serialization.Encoding.DER)
    await admin.call("GET", "/certificates/abc123/der", 404)


async def test_issue_refusals(admin: Admin) -> None:
    base = {"ca": "issuing", "profile": "tls-server", "csr": make_csr()}
    await admin.post("/certificates", {**base, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"}, expect=400)
    await admin.post("/certificates", {**base, "profile": "no-such"}, expect=404)
    await admin.post("/certificates", {**base, "ca": "no-such"}, expect=404)
    await admin.post("/certificates", {**base, "overrides": {"colour": "red"}}, expect=400)
    await admin.post("/certificates", {**base, "overrides": "subject"}, expect=400)
    await admin.post("/certificates", {k: v for k, v in base.items() if k != "csr"}, expect=400)
    overridden = await admin.post("/certificates", {
        "ca": "issuing", "profile": "tls-server", "csr": make_csr("Not A Hostname", ("www.example.test",)),
        "overrides": {"sans": ["DNS:alt.example.test"]},
    }, expect=201)
    assert overridden["sans"] == ["DNS:alt.example.test"]


async def test_revoke_shows_in_status_and_crl(admin: Admin) -> None:
    issued = await issue(admin)
    serial = issued["serial"]
    before = await crl_of(admin, "issuing")
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).replace(microsecond=0)
    await admin.post(f"/certificates/{serial}/revoke", {"reason": "no-such-reason"}, expect=400)
    await admin.post(f"/certificates/{serial}/revoke", {"reason": True}, expect=400)
    revoked = await admin.post(f"/certificates/{serial}/revoke",
                               {"reason": "keyCompromise", "invalidity_date": when.isoformat()})
    assert revoked["status"] == "revoked" and revoked["revocation_reason"] == "key_compromise"
    got = await admin.get(f"/certificates/{serial}")
    assert got["status"] == "revoked" and got["revoked_at"] is not None
    await admin.post(f"/certificates/{serial}/revoke", {"reason": 1}, expect=409)
    await admin.post(f"/certificates/{serial}/suspend", expect=409)

    crl = await crl_of(admin, "issuing")
    issuing = x509.load_pem_x509_certificate((await admin.get("/cas/issuing"))["certificate_pem"].encode())
    assert crl.is_signature_valid(issuing.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(crl) > number(before)
    forced = await crl_of(admin, "issuing", force="true")
    assert number(forced) > number(crl) and forced.get_revoked_certificate_by_serial_number(int(serial, 16))
    await admin.get("/cas/issuing/crl", params={"force": "maybe"}, expect=400)
    await admin.get("/cas/nope/crl", expect=404)


async def test_suspend_and_unsuspend(admin: Admin) -> None:
    serial = (await issue(admin))["serial"]
    await admin.post(f"/certificates/{serial}/unsuspend", expect=409)
    held = await admin.post(f"/certificates/{serial}/suspend")
    assert held["status"] == "hold" and held["revocation_reason"] == "certificate_hold"
    entry = (await crl_of(admin, "issuing")).get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.certificate_hold
    await admin.post(f"/certificates/{serial}/suspend", expect=409)
    released = await admin.post(f"/certificates/{serial}/unsuspend", {})
    assert released["status"] == "valid" and released["revocation_reason"] is None
    assert (await crl_of(admin, "issuing")).get_revoked_certificate_by_serial_number(int(serial, 16)) is None
    await admin.post(f"/certificates/{serial}/suspend", {"unexpected": 1}, expect=400)


async def test_bulk_revoke(admin: Admin) -> None:
    a = (await issue(admin, "a.example.test"))["serial"]
    b = (await issue(admin, "b.example.test"))["serial"]
    c = (await issue(admin, "c.example.test"))["serial"]
    device = (await issue(admin, "gadget-1", profile="device"))["serial"]
    await admin.post(f"/certificates/{b}/suspend")
    await admin.post(f"/certificates/{c}/revoke", {"reason": "superseded"})

    await admin.post("/certificates/revoke", {"reason": "cessationOfOperation"}, expect=400)
    await admin.post("/certificates/revoke", {"filter": {}, "all": False}, expect=400)
    await admin.post("/certificates/revoke", {"filter": {"profiel": "tls-server"}}, expect=400)
    await admin.post("/certificates/revoke", {"filter": {"status": "revoked", "ca": "issuing"}}, expect=400)
    await admin.post("/certificates/revoke", {"filter": {"ca": "issuing"}, "all": "yes"}, expect=400)
    await admin.post("/certificates/revoke", {"filter": {"ca": "issuing"}, "reason": "certificateHold"}, expect=400)

    result = await admin.post("/certificates/revoke", {
        "filter": {"ca": "issuing", "profile": "tls-server"}, "reason": "cessationOfOperation",
    })
    assert result == {"matched": 2, "revoked": 2, "failed": 0, "failures": []}  # a (valid) and b (hold)
    for serial in (a, b):
        got = await admin.get(f"/certificates/{serial}")
        assert got["status"] == "revoked" and got["revocation_reason"] == "cessation_of_operation"
    assert (await admin.get(f"/certificates/{c}"))["revocation_reason"] == "superseded"
    assert (await admin.get(f"/certificates/{device}"))["status"] == "valid"
    crl = await crl_of(admin, "issuing")
    assert {r.serial_number for r in crl} == {int(s, 16) for s in (a, b, c)}

    again = await admin.post("/certificates/revoke", {"filter": {"ca": "issuing", "profile": "tls-server"}})
    assert again["matched"] == 0 and again["revoked"] == 0

    everything = await admin.post("/certificates/revoke", {"all": True, "filter": {"ca": "issuing"}})
    assert everything["revoked"] == 1
    assert (await admin.get(f"/certificates/{device}"))["status"] == "revoked"
    assert (await admin.get("/cas/issuing"))["can_issue"]  # the issuing CA's own certificate was not matched


# --- approval queue -----------------------------------------------------------------------------


async def test_approve_and_reject_pending_requests(admin: Admin, gw: Gateway) -> None:
    await admin.post("/protocol-configs", {"id": "held", "protocol": "est", "ca": "issuing",
                                           "profiles": ["tls-server"], "settings": {"approval": "manual"}},
                     expect=201)
    first = await gw.authority.enroll("held", "est", make_csr("one.example.test", ("one.example.test",)).encode(),
                                      entity="box-1")
    second = await gw.authority.enroll("held", "est", make_csr("two.example.test", ("two.example.test",)).encode(),
                                       entity="box-2")
    assert isinstance(first, PendingRequest) and isinstance(second, PendingRequest)

    queue = await admin.get("/requests", params={"status": "pending"})
    # oldest first; two requests made within one second may come in either order
    assert {r["id"] for r in queue["items"]} == {first.request_id, second.request_id} and queue["total"] == 2
    one = await admin.get(f"/requests/{first.request_id}")
    assert one["subject"] == "CN=one.example.test" and one["status"] == "pending" and one["protocol_config"] == "held"
    await admin.get("/requests/no-such-request", expect=404)
    await admin.get("/requests", params={"status": "limbo"}, expect=400)

    approved = await admin.post(f"/requests/{first.request_id}/approve")
    assert approved["subject"] == "CN=one.example.test" and approved["request"] == first.request_id
    assert len(approved["chain"]) == 2
    assert (await admin.get(f"/certificates/{approved['serial']}"))["status"] == "valid"
    assert (await admin.get(f"/requests/{first.request_id}"))["status"] == "issued"
    await admin.post(f"/requests/{first.request_id}/approve", expect=409)
    await admin.post(f"/requests/{first.request_id}/reject", {"reason": "too late"}, expect=409)

    await admin.post(f"/requests/{second.request_id}/reject", {}, expect=400)
    await admin.post(f"/requests/{second.request_id}/reject", {"reason": 7}, expect=400)
    rejected = await admin.post(f"/requests/{second.request_id}/reject", {"reason": "not our device"})
    assert rejected["status"] == "rejected" and rejected["decided_by"] == "ops" and rejected["reason"] == "not our device"
    polled = await gw.authority.poll(second.request_id)
    assert isinstance(polled, PendingRequest) and polled.status == "rejected"
    await admin.post(f"/requests/{second.request_id}/approve", expect=409)
    assert (await admin.get("/requests", params={"status": "pending"}))["total"] == 0

    decisions = await admin.get("/events", params={"protocol_config": "held"})
    by_type = {e["type"]: e for e in decisions["items"]}
    assert by_type["approve"]["detail"]["actor"] == "ops" and by_type["reject"]["request"] == second.request_id


# --- end entities and events -------------------------------------------------------------------


async def test_deactivated_end_entity_gets_nothing(admin: Admin, gw: Gateway) -> None:
    csr = make_csr("sensor.example.test", ("sensor.example.test",)).encode()
    issued = await gw.authority.enroll("est1", "est", csr, entity="sensor-1")
    assert isinstance(issued, IssuedCertificate)
    await gw.authority.enroll("est1", "est", make_csr("x.example.test", ("x.example.test",)).encode(), entity="other")

    listing = await admin.get("/end-entities", params={"protocol_config": "est1"})
    assert [e["name"] for e in listing["items"]] == ["other", "sensor-1"]
    entity = next(e for e in listing["items"] if e["name"] == "sensor-1")
    assert (await admin.get(f"/end-entities/{entity['id']}"))["status"] == "active"
    await admin.get("/end-entities/no-such-entity", expect=404)
    certs = await admin.get("/certificates", params={"entity": entity["id"]})
    assert [c["serial"] for c in certs["items"]] == [format(issued.serial, "x")]

    await admin.post(f"/end-entities/{entity['id']}/status", {"status": "asleep"}, expect=400)
    await admin.post(f"/end-entities/{entity['id']}/status", {}, expect=400)
    changed = await admin.post(f"/end-entities/{entity['id']}/status", {"status": "inactive"})
    assert changed["status"] == "inactive"
    with pytest.raises(Forbidden):
        await gw.authority.enroll("est1", "est", csr, entity="sensor-1")
    assert [e["name"] for e in (await admin.get("/end-entities", params={"status": "inactive"}))["items"]] == ["sensor-1"]

    await admin.post(f"/end-entities/{entity['id']}/status", {"status": "active"})
    await gw.authority.enroll("est1", "est", csr, entity="sensor-1")
    await admin.post(f"/end-entities/{entity['id']}/status", {"status": "decommissioned"})
    await admin.post(f"/end-entities/{entity['id']}/status", {"status": "active"}, expect=409)

    events = await admin.get("/events", params={"entity": entity["id"]})
    types = [e["type"] for e in events["items"]]
    assert types == ["entity_decommissioned", "issue", "entity_active", "issue", "entity_inactive", "issue"]
    assert [e["status"] for e in events["items"] if e["type"] == "issue"] == ["success", "failure", "success"]
    assert events["items"][0]["detail"]["actor"] == "ops"
    failures = await admin.get("/events", params={"protocol_config": "est1", "status": "failure"})
    assert [(e["type"], e["detail"]["error"]) for e in failures["items"]] == [("issue", "forbidden")]


async def test_events_are_listed_and_filtered(admin: Admin) -> None:
    serial = (await issue(admin))["serial"]
    await admin.post(f"/certificates/{serial}/revoke", {"reason": "superseded"})
    events = await admin.get("/events", params={"serial": serial})
    assert [(e["type"], e["status"]) for e in events["items"]] == [("revoke", "success"), ("issue", "success")]
    assert all(e["detail"]["actor"] == "ops" and e["ca"] == "issuing" for e in events["items"])
    assert events["items"][0]["detail"]["reason"] == "superseded"
    revokes = await admin.get("/events", params={"type": "revoke"})
    assert [e["serial"] for e in revokes["items"]] == [serial]
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    assert (await admin.get("/events", params={"since": future}))["items"] == []
    first = await admin.get("/events", params={"limit": "1"})
    assert len(first["items"]) == 1 and first["next_offset"] == 1 and "total" not in first
    await admin.get("/events", params={"since": "yesterday"}, expect=400)


# --- malformed requests and error mapping ------------------------------------------------------


async def test_malformed_requests_are_400_with_detail(admin: Admin) -> None:
    res = await admin.call("POST", "/certificates", 400, data=b'{"ca": "issuing",',
                           headers={"Content-Type": "application/json"})
    assert res.data["error"] == "bad_request" and "not valid JSON" in res.data["detail"]
    res = await admin.call("POST", "/certificates", 400, data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert "JSON object" in res.data["detail"]
    res = await admin.call("POST", "/certificates", 400, data=b'{"ca": NaN}', headers={"Content-Type": "application/json"})
    assert "not valid JSON" in res.data["detail"]
    await admin.call("POST", "/certificates", 400, data=b"\xff\xfe{}", headers={"Content-Type": "application/json"})
    await admin.call("POST", "/cas", 400)  # no body at all
    res = await admin.call("POST", "/cas", 400, json_body={"kind": "root", "id": 5, "name": "X"})
    assert res.data["detail"] == "id must be a string"
    for params in ({"limit": "501"}, {"limit": "0"}, {"limit": "ten"}, {"offset": "-1"}, {"colour": "red"},
                   {"status": "expired"}, {"expires_before": "soon"}):
        await admin.get("/certificates", params=params, expect=400)
    await admin.get("/certificates", params={"limit": "500"})


async def test_routing_errors_are_json(admin: Admin) -> None:
    async with admin.client.get("/no-such-thing") as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    async with admin.client.get("/no-such-thing", headers={"X-API-Key": API_KEY}) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    async with admin.client.delete("/cas", headers={"X-API-Key": API_KEY}) as resp:
        assert resp.status == 405 and "GET" in resp.headers["Allow"]
        assert (await resp.json())["error"] == "method_not_allowed"


async def test_body_size_is_limited(gw: Gateway, aiohttp_client: Any) -> None:
    gw.config.server.max_body_bytes = 4096
    client = await aiohttp_client(create_admin_app(gw))
    big = json.dumps({"ca": "issuing", "profile": "tls-server", "csr": "x" * 10_000}).encode()
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    async with client.post("/certificates", data=big, headers=headers) as resp:
        assert resp.status == 413 and (await resp.json())["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with client.post("/certificates", data=chunks(), headers=headers) as resp:
        assert resp.status == 413 and (await resp.json())["error"] == "too_large"


class _BrokenProfiles(dict):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("secret internal state 42")


async def test_unexpected_errors_are_a_bare_500(admin: Admin, gw: Gateway, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(gw, "profiles", _BrokenProfiles())
    with caplog.at_level(logging.ERROR, logger="gateway.admin"):
        res = await admin.call("GET", "/profiles", 500)
    assert res.data == {"error": "internal", "detail": "internal server error"}
    assert b"secret" not in res.body and b"Traceback" not in res.body
    assert any("secret internal state 42" in (r.exc_text or "") for r in caplog.records)


# --- client-certificate authentication over real TLS ---------------------------------------------


async def _issue_key_pair(gw: Gateway, cn: str, profile: str, san: x509.GeneralName | None) -> tuple[ec.EllipticCurvePrivateKey, IssuedCertificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return key, await gw.authority.issue_direct("issuing", csr, profile, actor="test-setup")


def _write_identity(path: Path, key: ec.EllipticCurvePrivateKey, issued: IssuedCertificate) -> tuple[Path, Path]:
    cert_file, key_file = path.with_suffix(".pem"), path.with_suffix(".key")
    certs = [issued.certificate, *issued.chain[:-1]]  # leaf and intermediate; the root is the anchor
    cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_file, key_file


async def test_registered_client_certificate_authenticates(gw: Gateway, tmp_path: Path, aiohttp_client: Any) -> None:
    root_pem = gw.cas.certificate("root").public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[union-attr]
    server_key, server_cert = await _issue_key_pair(
        gw, "localhost", "tls-server", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    )
    admin_key, admin_cert = await _issue_key_pair(gw, "admin-operator", "device", None)
    stranger_key, stranger_cert = await _issue_key_pair(gw, "stranger", "device", None)
    async with gw.store.transaction() as q:
        await q.api_keys.insert(client_certificate_record("operator workstation", admin_cert.certificate))

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*_write_identity(tmp_path / "server", server_key, server_cert))
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    server_ctx.load_verify_locations(cadata=root_pem)
    server = TestServer(create_admin_app(gw))
    await server.start_server(ssl=server_ctx)
    client = await aiohttp_client(server)

    def client_ctx(identity: tuple[Path, Path] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=root_pem)
        if identity is not None:
            ctx.load_cert_chain(*identity)
        return ctx

    as_admin = client_ctx(_write_identity(tmp_path / "admin", admin_key, admin_cert))
    as_stranger = client_ctx(_write_identity(tmp_path / "stranger", stranger_key, stranger_cert))
    anonymous = client_ctx(None)

    async with client.get("/cas", ssl=as_admin) as resp:
        assert resp.status == 200 and len((await resp.json())["items"]) == 2
    async with client.get("/cas", ssl=anonymous) as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="gateway-admin"'
    async with client.get("/cas", ssl=as_stranger) as resp:
        assert resp.status == 401
    async with client.get("/cas", ssl=as_admin, headers={"X-API-Key": "wrong"}) as resp:
        assert resp.status == 401  # a presented key decides, even next to a good certificate
    async with client.get("/cas", ssl=anonymous, headers={"X-API-Key": API_KEY}) as resp:
        assert resp.status == 200

    serial = format(stranger_cert.serial, "x")
    async with client.post(f"/certificates/{serial}/revoke", json={"reason": "affiliationChanged"},
                           ssl=as_admin) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "revoked"
    async with client.get("/events", params={"type": "revoke"}, ssl=as_admin) as resp:
        event = (await resp.json())["items"][0]
    assert event["serial"] == serial and event["detail"]["actor"] == "CN=admin-operator"


async def test_mounted_under_admin_in_the_https_app(gw: Gateway, aiohttp_client: Any) -> None:
    from gateway.web.app import create_https_app

    app = create_https_app(gw)
    client = await aiohttp_client(app)
    async with client.get("/admin/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    prefix = doc["servers"][0]["url"]
    mounted = {
        (r.method, r.resource.canonical) for r in app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith(prefix + "/") and r.method != "HEAD"
    }
    assert mounted == {(m.upper(), prefix + p) for p, ops in doc["paths"].items() for m in ops}
    async with client.get("/admin/cas") as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    async with client.get("/admin/cas", headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
        assert resp.status == 200 and (await resp.json())["total"] == 2


@pytest.mark.parametrize("path", ["/events", "/certificates", "/end-entities"])
async def test_an_offset_beyond_any_store_integer_is_a_400_with_the_bound_in_the_schema(
    admin: Admin, path: str,
) -> None:
    await admin.get(path, params={"offset": "9223372036854775808"}, expect=400)
    await admin.get(path, params={"offset": str(2**53)}, expect=400)
    assert (await admin.get(path, params={"offset": str(2**53 - 1)}))["items"] == []
    spec = await admin.get("/openapi.json")
    offset = next(p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 2**53 - 1


# --- issue 11: schema and server agree; API key roles, expiry, revocation ------------


async def test_issue11_hex_serial_forms_and_strict_serials(admin: Admin) -> None:
    """0X-prefixed serials were 400 (lstrip('0') ate the 0 of 0X); int(x, 16) extras such as
    '_' are refused, as the schema's pattern says."""
    await admin.get("/certificates/0X0abc", expect=404)
    await admin.get("/certificates/0a:bc", expect=404)
    await admin.get("/certificates/a_bc", expect=400)
    await admin.get("/events", params={"serial": ""}, expect=400)


async def test_issue11_nulls_and_empty_bulk_filters_refused(admin: Admin) -> None:
    r = await admin.post("/certificates/revoke", {"filter": {"status": None}, "all": True}, expect=400)
    assert "null" in r["detail"]
    await admin.post("/certificates/revoke", {"filter": {"ca": ""}}, expect=400)


async def test_issue11_integral_float_and_long_ca_name(admin: Admin) -> None:
    await admin.post("/cas", {"kind": "root", "id": "r2", "name": "R2", "validity_days": 30.0}, expect=201)
    await admin.post("/cas", {"kind": "root", "id": "r3", "name": "n" * 65}, expect=400)


async def test_issue11_overrides_checked_at_the_edge(admin: Admin) -> None:
    r = await admin.post("/certificates", {"ca": "issuing", "profile": "tls-server", "csr": make_csr(),
                                          "overrides": {"subject": 5}}, expect=400)
    assert "overrides.subject" in r["detail"]


async def test_issue11_events_filter_by_ca_and_configuration(admin: Admin) -> None:
    await issue(admin)
    await admin.post("/cas", {"kind": "root", "id": "r4", "name": "R4"}, expect=201)
    events = (await admin.get("/events", params={"ca": "r4"}))["items"]
    assert [e["type"] for e in events] == ["ca_create"] and events[0]["detail"]["actor"] == "ops"
    assert (await admin.get("/events", params={"configuration": "nope"}))["items"] == []


async def test_issue11_api_keys_roles_expiry_revocation(admin: Admin, gw: Gateway) -> None:
    from gateway.admin.keys import create_key
    from gateway.store import schema

    created = await admin.post("/api-keys", {"name": "audit", "role": "auditor"}, expect=201)
    assert created["role"] == "auditor"
    auditor = created["key"]
    await admin.post("/api-keys", {"name": "audit"}, expect=409)
    listing = (await admin.get("/api-keys"))["items"]
    assert {k["name"] for k in listing} >= {"ops", "audit"}
    assert not any("key" in k or "key_sha256" in k for k in listing) and auditor not in json.dumps(listing)
    as_auditor = {"Authorization": f"Bearer {auditor}"}
    await admin.get("/certificates", headers=as_auditor)
    r = await admin.post("/api-keys", {"name": "x2"}, expect=403, headers=as_auditor)
    assert r["error"] == "forbidden"
    await admin.post("/certificates/revoke", {"all": True}, expect=403, headers=as_auditor)
    await admin.post("/api-keys/audit/revoke")
    await admin.get("/certificates", expect=401, headers=as_auditor)
    await admin.post("/api-keys/audit/revoke", expect=409)
    _, key = await create_key(gw, "short", by="test")
    async with gw.store.transaction() as q:
        rec = await q.api_keys.find("short")
        assert rec is not None
        await q.api_keys._update(schema.api_keys, schema.api_keys.c.id == rec.id,
                                 {"expires_at": gw.clock() - dt.timedelta(seconds=1)}, "API key")
    await admin.get("/certificates", expect=401, headers={"Authorization": f"Bearer {key}"})
    events = (await admin.get("/events", params={"type": "apikey_create"}))["items"]
    assert {e["detail"]["key_name"] for e in events} >= {"audit", "short"}
