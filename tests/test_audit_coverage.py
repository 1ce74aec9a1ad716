"""Every administrative change is an audit event naming who made it.

The admin API half walks every mutating operation the served OpenAPI document lists
(it is built from the same route table as the router, protocol routes included) on a
real gateway, with a named admin key, and checks that each successful call added an
event whose ``actor`` is that key's name, findable by its CA or configuration, with no
secret the call returned in any event. A new mutating route without a recipe here
fails the walk, so it cannot ship unaudited. The CLI half runs the operator commands
as subprocesses and checks they are audited as ``cli:<os user>``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conformance.harness import gateway_command, run_cli, running_gateway
from gateway.ca.backend import PendingRequest

from .support import csr_pem, make_csr

WALKER = "audit-walker"
MUTATING = ("post", "put", "patch", "delete")


@dataclass
class Call:
    """What one recipe changed: where its event must be findable, and what secrets
    the response carried (never to appear in an event)."""

    ca: str | None = None
    configuration: str | None = None
    secrets: list[str] = field(default_factory=list)


class Admin:
    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self.session, self.base, self.key = session, base, key

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200,
                   params: dict[str, str] | None = None) -> Any:
        kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {self.key}"}, "params": params}
        if body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            raw = await resp.read()
            assert resp.status == expect, f"{method} {path}: {resp.status} {raw[:300]!r}"
            return json.loads(raw) if resp.content_type == "application/json" else raw

    async def events_after(self, last: int, **params: str) -> list[dict[str, Any]]:
        page = await self.call("GET", "/events", params={"limit": "500", **params})
        return [e for e in page["items"] if e["id"] > last]

    async def last_event(self) -> int:
        items = (await self.call("GET", "/events", params={"limit": "1"}))["items"]
        return int(items[0]["id"]) if items else 0


def _pem_csr(cn: str) -> str:
    return csr_pem(make_csr(cn, (cn,))[0]).decode()


def _outside_root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Audit Walk Outside Root")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


Recipe = Callable[[Admin, Any, dict[str, Any]], Awaitable[Call]]
RECIPES: dict[str, Recipe] = {}


def recipe(operation_id: str) -> Callable[[Recipe], Recipe]:
    """Register how to call one operation successfully; the walk runs them in this order."""
    def add(fn: Recipe) -> Recipe:
        RECIPES[operation_id] = fn
        return fn
    return add


# --- core routes ----------------------------------------------------------------------
@recipe("createApiKey")
async def _create_api_key(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/api-keys", {"name": "walk-made", "role": "auditor"}, expect=201)
    return Call(secrets=[made["key"]])


@recipe("revokeApiKey")
async def _revoke_api_key(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/api-keys/walk-made/revoke")
    return Call()


@recipe("createConsoleUser")
async def _create_console_user(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/console-users", {"username": "walk-user", "role": "ca-auditor"}, expect=201)
    return Call(secrets=[made["password"]])


@recipe("setConsoleUserRole")
async def _set_console_user_role(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/console-users/walk-user/role", {"role": "protocol-auditor"})
    return Call()


@recipe("deleteConsoleUser")
async def _delete_console_user(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/console-users/walk-user", expect=204)
    return Call()


@recipe("createCA")
async def _create_ca(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/cas", {"kind": "external_csr", "id": "walk-ext", "name": "Walk Sub"},
                            expect=201)
    state["ext_csr"] = x509.load_pem_x509_csr(made["csr_pem"].encode())
    return Call(ca="walk-ext")


@recipe("importCACertificate")
async def _import_ca_certificate(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    csr, (key, root) = state["ext_csr"], _outside_root()
    now = dt.datetime.now(dt.timezone.utc)
    signed = (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(root.subject)
        .public_key(csr.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA384())
    )
    await admin.call("POST", "/cas/walk-ext/certificate", {"certificate": _pem(signed), "chain": _pem(root)})
    return Call(ca="walk-ext")


@recipe("createProtocolConfig")
async def _create_config(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/protocol-configs", {
        "id": "walk-held", "protocol": "est", "ca": "issuing", "profiles": ["tls-server"],
        "settings": {"approval": "manual"}}, expect=201)
    return Call(ca="issuing", configuration="walk-held")


@recipe("updateProtocolConfig")
async def _update_config(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("PATCH", "/protocol-configs/walk-held", {"settings": {"note": "audited"}})
    return Call(ca="issuing", configuration="walk-held")


@recipe("issueCertificate")
async def _issue(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    issued = await admin.call("POST", "/certificates", {"ca": "issuing", "profile": "tls-server",
                                                        "csr": _pem_csr("walk.example.test")}, expect=201)
    state["serial"] = issued["serial"]
    return Call(ca="issuing")


@recipe("suspendCertificate")
async def _suspend(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", f"/certificates/{state['serial']}/suspend")
    return Call(ca="issuing")


@recipe("unsuspendCertificate")
async def _unsuspend(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", f"/certificates/{state['serial']}/unsuspend")
    return Call(ca="issuing")


@recipe("revokeCertificate")
async def _revoke(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", f"/certificates/{state['serial']}/revoke", {"reason": "superseded"})
    return Call(ca="issuing")


@recipe("bulkRevokeCertificates")
async def _bulk_revoke(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await gw.authority.issue_direct("issuing", _pem_csr("bulk.walk.test").encode(), "tls-server", actor="setup")
    result = await admin.call("POST", "/certificates/revoke",
                              {"filter": {"subject": "bulk.walk.test"}, "reason": "cessationOfOperation"})
    assert result["revoked"] == 1, result
    return Call(ca="issuing")


async def _held(gw: Any, cn: str) -> str:
    held = await gw.authority.enroll("walk-held", "est", _pem_csr(cn).encode(), entity=cn)
    assert isinstance(held, PendingRequest)
    return str(held.request_id)


@recipe("approveRequest")
async def _approve(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", f"/requests/{await _held(gw, 'approve.walk.test')}/approve")
    return Call(ca="issuing", configuration="walk-held")


@recipe("rejectRequest")
async def _reject(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", f"/requests/{await _held(gw, 'reject.walk.test')}/reject", {"reason": "not ours"})
    return Call(ca="issuing", configuration="walk-held")


@recipe("setEndEntityStatus")
async def _entity_status(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    entities = await admin.call("GET", "/end-entities", params={"protocol_config": "walk-held"})
    entity = next(e for e in entities["items"] if e["name"] == "approve.walk.test")
    await admin.call("POST", f"/end-entities/{entity['id']}/status", {"status": "inactive"})
    return Call(configuration="walk-held")


@recipe("keygenPKCS12")
async def _keygen(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/protocol-configs/est/keygen",
                     {"common_name": "keygen.walk.test", "password": "walk-p12-password"}, expect=201)
    return Call(configuration="est", secrets=["walk-p12-password"])


@recipe("deleteProtocolConfig")
async def _delete_config(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await gw.authority.create_config("walk-gone", "est", "issuing", ["tls-server"])
    await admin.call("DELETE", "/protocol-configs/walk-gone", expect=204)
    return Call(ca="issuing", configuration="walk-gone")


# --- protocol routes ------------------------------------------------------------------
@recipe("createAcmeEabKey")
async def _eab_create(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/acme/acme/eab-keys", {"label": "walk"}, expect=201)
    state["kid"] = made["kid"]
    return Call(configuration="acme", secrets=[made["hmac_key"]])


@recipe("revokeAcmeEabKey")
async def _eab_revoke(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", f"/acme/acme/eab-keys/{state['kid']}", expect=204)
    return Call(configuration="acme")


@recipe("createScepChallenge")
async def _scep_challenge(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/scep/scep/challenges", {}, expect=201)
    return Call(configuration="scep", secrets=[made["challenge"]])


@recipe("setScepStaticChallenge")
async def _scep_static(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("PUT", "/scep/scep/static-challenge", {"challenge": "walk-static-secret-1"})
    return Call(configuration="scep", secrets=[made["challenge"]])


@recipe("deleteScepStaticChallenge")
async def _scep_static_delete(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/scep/scep/static-challenge", expect=204)
    return Call(configuration="scep")


@recipe("setScepChallengeAdmin")
async def _scep_admin(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("PUT", "/scep/scep/challenge-admins/walkadmin", {})
    return Call(configuration="scep", secrets=[made["password"]])


@recipe("deleteScepChallengeAdmin")
async def _scep_admin_delete(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/scep/scep/challenge-admins/walkadmin", expect=204)
    return Call(configuration="scep")


@recipe("createScepRa")
async def _scep_ra(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/scep/scep/ra", {}, expect=201)
    return Call(configuration="scep")


@recipe("createWindowsUser")
async def _windows_user(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/windows/windows/users", {"username": "walker", "templates": ["GatewayUser"]},
                            expect=201)
    return Call(configuration="windows", secrets=[made["password"]])


@recipe("deleteWindowsUser")
async def _windows_user_delete(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/windows/windows/users/walker", expect=204)
    return Call(configuration="windows")


@recipe("createEstUser")
async def _est_user(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/est/est/users", {"username": "walker"}, expect=201)
    return Call(configuration="est", secrets=[made["password"]])


@recipe("deleteEstUser")
async def _est_user_delete(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/est/est/users/walker", expect=204)
    return Call(configuration="est")


@recipe("createMdmConfiguration")
async def _mdm_config(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/mdm", {"id": "walk-mdm", "platform": "maas360"}, expect=201)
    return Call(configuration="walk-mdm")


@recipe("createMdmDigitalId")
async def _mdm_digital_id(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/mdm/walk-mdm/digital-ids",
                     {"name": "walk", "profile": "mdmws-p12-digital-signature", "rdn_format": "CN=<udid>"},
                     expect=201)
    return Call(configuration="walk-mdm")


@recipe("deleteMdmDigitalId")
async def _mdm_digital_id_delete(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/mdm/walk-mdm/digital-ids/walk", expect=204)
    return Call(configuration="walk-mdm")


@recipe("createMdmCredential")
async def _mdm_credential(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/mdm/walk-mdm/credentials", {"username": "walker"}, expect=201)
    return Call(configuration="walk-mdm", secrets=[made["password"]])


@recipe("unlockMdmCredential")
async def _mdm_credential_unlock(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("POST", "/mdm/walk-mdm/credentials/walker/unlock", expect=200)
    return Call(configuration="walk-mdm")


@recipe("resetMdmCredentialPassword")
async def _mdm_credential_password(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    made = await admin.call("POST", "/mdm/walk-mdm/credentials/walker/password", expect=200)
    return Call(configuration="walk-mdm", secrets=[made["password"]])


@recipe("deleteMdmCredential")
async def _mdm_credential_delete(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("DELETE", "/mdm/walk-mdm/credentials/walker", expect=204)
    return Call(configuration="walk-mdm")


@recipe("retryOutbox")
async def _outbox_retry(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    from gateway.store.records import DestinationRecord, OutboxRecord

    async with gw.store.transaction() as q:
        await q.destinations.insert(DestinationRecord(id="walk-dest", protocol_config="est",
                                                      url="https://127.0.0.1:9/none", settings={}))
        await q.outbox.add(OutboxRecord(id="walk-entry", destination_id="walk-dest", event="issued",
                                        payload={}, status="failed", attempts=12))
    await admin.call("POST", "/outbox/walk-entry/retry")
    return Call(configuration="est")


# A GET that changes state: a forced CRL is numbered and stored like any other.
@recipe("getCRL?force=true")
async def _forced_crl(admin: Admin, gw: Any, state: dict[str, Any]) -> Call:
    await admin.call("GET", "/cas/issuing/crl", params={"force": "true"})
    return Call(ca="issuing")


STATE_CHANGING_READS = {"getCRL?force=true"}


async def test_every_mutating_admin_route_records_an_event_naming_its_actor(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "data") as (gw, info):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=info.ssl_context())) as session:
            base = info.data["admin"]["url"]
            dev = Admin(session, base, info.api_key)
            walker_key = (await dev.call("POST", "/api-keys", {"name": WALKER}, expect=201))["key"]
            admin = Admin(session, base, walker_key)
            doc = await admin.call("GET", "/openapi.json")
            served = {op["operationId"] for ops in doc["paths"].values()
                      for method, op in ops.items() if method in MUTATING}
            assert served - set(RECIPES) == set(), "mutating routes with no audit recipe here"
            assert set(RECIPES) - served - STATE_CHANGING_READS == set(), "recipes for routes no longer served"

            unaudited, unfiltered, leaked = [], [], []
            state: dict[str, Any] = {}
            for operation_id, run in RECIPES.items():
                last = await admin.last_event()
                call = await run(admin, gw, state)
                mine = [e for e in await admin.events_after(last) if e["detail"].get("actor") == WALKER]
                if not mine:
                    unaudited.append(operation_id)
                    continue
                ids = {e["id"] for e in mine}
                for name, value in (("ca", call.ca), ("configuration", call.configuration)):
                    found = {e["id"] for e in await admin.events_after(last, **{name: value})} if value else ids
                    if not ids & found:
                        unfiltered.append(f"{operation_id} by {name}={value}")
                text = json.dumps(await admin.events_after(last))
                leaked += [operation_id for secret in call.secrets if secret in text]
            assert unaudited == [], f"successful changes with no event naming the API key: {unaudited}"
            assert unfiltered == [], f"events not found by their CA / configuration: {unfiltered}"
            assert leaked == [], f"secrets in event details: {leaked}"

            # a forced CRL is a change, so a read-only key may not make one
            made = await dev.call("POST", "/api-keys", {"name": "walk-auditor", "role": "auditor"}, expect=201)
            auditor = Admin(session, base, made["key"])
            last = await admin.last_event()
            await auditor.call("GET", "/cas/issuing/crl", params={"force": "true"}, expect=403)
            await auditor.call("GET", "/cas/issuing/crl")
            assert await admin.events_after(last) == []


# --- operator CLI ---------------------------------------------------------------------
def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def _events(data_dir: Path) -> list[dict[str, Any]]:
    """Every event in the store, oldest first (read through a gateway on the directory)."""
    import asyncio

    from gateway.config import load_config
    from gateway.runtime import Gateway
    from gateway.store.records import EventFilter

    async def read() -> list[dict[str, Any]]:
        gw = await Gateway.open(load_config(data_dir))
        try:
            async with gw.store.read() as q:
                records = await q.events.list(EventFilter(), limit=100000, offset=0)
        finally:
            await gw.close()
        return [{"type": r.type, "config": r.protocol_config, "ca": r.ca_id, "serial": r.serial, **r.detail}
                for r in reversed(records)]

    return asyncio.run(read())


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit-cli") / "data"
    run_cli("init", data_dir=path)
    return path


def _new_events(data_dir: Path, *commands: tuple[str, ...]) -> list[dict[str, Any]]:
    before = len(_events(data_dir))
    for argv in commands:
        run_cli(*argv, data_dir=data_dir)
    return _events(data_dir)[before:]


def _rsa_ra(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Walk RA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ra.pem", tmp_path / "ra.key"
    cert_path.write_text(_pem(cert))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


CLI_CHANGES: list[tuple[str, tuple[tuple[str, ...], ...], set[str]]] = [
    ("est user add/password/disable/enable/unlock/remove",
     (("est", "user", "add", "est", "walker"), ("est", "user", "add", "est", "walker"),
      ("est", "user", "disable", "est", "walker"), ("est", "user", "enable", "est", "walker"),
      ("est", "user", "unlock", "est", "walker"), ("est", "user", "remove", "est", "walker")),
     {"credential_create", "credential_password", "credential_disable", "credential_enable",
      "credential_unlock", "credential_delete"}),
    ("est create/set", (("est", "create", "walk-label"), ("est", "set", "walk-label", "--approval", "manual")),
     {"config_create", "config_update"}),
    ("scep challenge", (("scep", "challenge"),), {"scep_challenge"}),
    ("scep static-challenge", (("scep", "static-challenge"),), {"scep_static_challenge"}),
    ("scep admin add/remove", (("scep", "admin", "add", "walkadmin"), ("scep", "admin", "remove", "walkadmin")),
     {"scep_challenge_admin_add", "scep_challenge_admin_remove"}),
    ("scep ra issue", (("scep", "ra", "issue"),), {"scep_ra_issue"}),
    ("scep config create", (("scep", "config", "create", "walk-scep"),), {"config_create"}),
    ("acme eab create", (("acme", "eab", "create"),), {"acme_eab_create"}),
    ("windows config create", (("windows", "config", "create", "walk-win", "--adcs-paths"),), {"config_create",
                                                                                           "config_update"}),
    ("windows user add/disable/enable/unlock/remove",
     (("windows", "user", "add", "walker", "--template", "GatewayUser"),
      ("windows", "user", "disable", "walker"), ("windows", "user", "enable", "walker"),
      ("windows", "user", "unlock", "walker"), ("windows", "user", "remove", "walker")),
     {"credential_create", "config_update", "credential_disable", "credential_enable", "credential_unlock",
      "credential_delete"}),
    ("mdm create, digital-id add/remove, credential add/unlock/password/remove",
     (("mdm", "create", "walk-mdm", "--platform", "ivanti"),
      ("mdm", "digital-id", "add", "walk", "--config", "walk-mdm", "--profile", "mdmws-p12-digital-signature",
       "--rdn-format", "CN=<udid>"),
      ("mdm", "digital-id", "remove", "walk", "--config", "walk-mdm"),
      ("mdm", "credential", "add", "walker", "--config", "walk-mdm"),
      ("mdm", "credential", "unlock", "walker", "--config", "walk-mdm"),
      ("mdm", "credential", "password", "walker", "--config", "walk-mdm"),
      ("mdm", "credential", "remove", "walker", "--config", "walk-mdm")),
     {"config_create", "mdm_digital_id", "credential_create", "credential_unlock", "credential_password",
      "credential_delete"}),
    ("ca create", (("ca", "create", "walk-root", "--name", "Walk Root"),), {"ca_create"}),
    ("distribution add", (("distribution", "add", "est", "https://receiver.example.test/certs"),),
     {"destination_create"}),
    ("notify add/remove", (("notify", "add", "walk-notify", "--event", "issued", "--email-to", "pki@example.test",
                            "--from", "gw@example.test", "--smtp-host", "127.0.0.1"),
                           ("notify", "remove", "walk-notify")), {"notification_create", "notification_delete"}),
    ("ca crl --force", (("ca", "crl", "--force"),), {"crl_issue"}),
    ("apikey create/revoke", (("apikey", "create", "walk-cli"), ("apikey", "revoke", "walk-cli")),
     {"apikey_create", "apikey_revoke"}),
]


@pytest.mark.parametrize("what, commands, types", CLI_CHANGES, ids=[c[0] for c in CLI_CHANGES])
def test_operator_commands_are_audited_as_the_os_user(
    cli_dir: Path, what: str, commands: tuple[tuple[str, ...], ...], types: set[str],
) -> None:
    new = _new_events(cli_dir, *commands)
    by_type = {e["type"]: e for e in new}
    assert types <= set(by_type), f"{what}: no event of type {sorted(types - set(by_type))}"
    assert {t: by_type[t].get("actor") for t in types} == {t: _cli_actor() for t in types}


def test_cli_secrets_stay_out_of_events(cli_dir: Path) -> None:
    """The password an operator gives on stdin, and the generated ones printed once."""
    before = len(_events(cli_dir))
    subprocess.run(gateway_command("est", "user", "add", "est", "stdin-user", "--password-stdin",
                                   "--data-dir", str(cli_dir)),
                   input="walk-password-from-stdin\n", text=True, capture_output=True, check=True, timeout=300)
    printed = [run_cli("scep", "static-challenge", data_dir=cli_dir).stdout.strip(),
               run_cli("scep", "admin", "add", "secretadmin", data_dir=cli_dir).stdout.strip()]
    new = _events(cli_dir)[before:]
    assert {e["type"] for e in new} >= {"credential_create", "scep_static_challenge", "scep_challenge_admin_add"}
    assert {e.get("actor") for e in new} == {_cli_actor()}
    text = json.dumps(new)
    assert "walk-password-from-stdin" not in text and not [p for p in printed if p and p in text]


def test_scep_ra_import_and_cert_commands_are_audited(cli_dir: Path, tmp_path: Path) -> None:
    cert, key = _rsa_ra(tmp_path)
    csr = tmp_path / "walk.csr"
    csr.write_bytes(csr_pem(make_csr("cli.walk.test", ("cli.walk.test",))[0]))
    new = _new_events(cli_dir, ("scep", "ra", "import", str(cert), str(key)))
    issued = run_cli("cert", "issue", "--csr", str(csr), data_dir=cli_dir).stdout
    serial = format(x509.load_pem_x509_certificate(issued.encode()).serial_number, "x")
    new += _new_events(cli_dir, ("cert", "revoke", serial))
    issue = [e for e in _events(cli_dir) if e["type"] == "issue" and e["serial"] == serial]
    actors = {e["type"]: e.get("actor") for e in new}
    assert actors.get("scep_ra_import") == _cli_actor() and actors.get("revoke") == _cli_actor(), actors
    assert [e.get("actor") for e in issue] == [_cli_actor()]


def test_moving_the_default_est_label_audits_both_labels(cli_dir: Path) -> None:
    """``est create --default`` also changes the label that was the default (``est``)."""
    new = _new_events(cli_dir, ("est", "create", "walk-default", "--default"))
    changed = {(e["type"], e["config"]): e.get("actor") for e in new}
    assert changed.get(("config_create", "walk-default")) == _cli_actor()
    assert changed.get(("config_update", "est")) == _cli_actor(), changed
