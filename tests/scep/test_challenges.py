"""Challenge issuance: NDES mscep_admin page, Jamf webhook, admin API; and their use."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from conformance.scep.simulator import make_csr
from gateway.admin.api import create_admin_app
from gateway.secrets import api_key_hash
from gateway.store.records import ApiKeyRecord, EventFilter
from protocols.scep.adapter import ADAPTER
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import ADMIN_PASSWORD, ADMIN_USER, Env

NDES_RE = re.compile(r"The enrollment challenge password is: <B> ([0-9A-F]{16}) </B>")
API_KEY = "scep-admin-api-key-0123456789abcdefghijklmnopqr"


def basic(user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def allow_plain_http(env: Env, **extra: Any) -> None:
    await env.add_challenge_admin()
    await env.core.update_protocol_config("scep", settings={"ndes": True, "admin_over_http": True, **extra})


async def enroll_with(env: Env, challenge: str, cn: str = "dyn-device") -> Any:
    device = await env.device()
    return await env.post(device.pkcs_req(make_csr(device.key, cn, challenge=challenge))[0])


@pytest.mark.parametrize("path", ["/certsrv/mscep_admin/", "/certsrv/mscep_admin", "/scep/scep/mscep_admin/"])
async def test_mscep_admin_page_is_ndes_shaped_and_its_password_enrolls_once(env: Env, path: str) -> None:
    await allow_plain_http(env)
    async with env.client.get(path, headers=basic()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-16"
        raw = await resp.read()
    assert raw.startswith(b"\xff\xfe")  # UTF-16LE with BOM, as NDES serves it
    page = raw[2:].decode("utf-16-le")
    challenge = NDES_RE.search(page).group(1)  # what Jamf's Dynamic-Microsoft CA scrapes
    assert "expire within 60 minutes" in page
    assert (await enroll_with(env, challenge)).status is PkiStatus.SUCCESS
    again = await enroll_with(env, challenge, "another")
    assert again.fail_info is FailInfo.BAD_REQUEST


async def test_mscep_admin_requires_credentials_and_https(env: Env) -> None:
    await env.add_challenge_admin()
    async with env.client.get("/certsrv/mscep_admin/", headers=basic()) as resp:
        assert resp.status == 403 and "HTTPS" in await resp.text()  # plain HTTP refused by default
    await allow_plain_http(env)
    for headers in ({}, basic(password="wrong-password"), basic(user="nobody"), {"Authorization": "Basic %%%"}):
        async with env.client.get("/certsrv/mscep_admin/", headers=headers) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    assert await env.repo.list_challenges("scep", env.clock()) == []
    failures = await env.core.list_events(EventFilter(type="scep_challenge", status="failure"))
    assert len(failures) == 4


async def test_password_cache_full(env: Env) -> None:
    await allow_plain_http(env, dynamic_challenge_limit=2)
    for _ in range(2):
        async with env.client.get("/certsrv/mscep_admin/", headers=basic()) as resp:
            assert NDES_RE.search((await resp.read())[2:].decode("utf-16-le"))
    async with env.client.get("/certsrv/mscep_admin/", headers=basic()) as resp:
        page = (await resp.read())[2:].decode("utf-16-le")
    assert "password cache is full" in page and not NDES_RE.search(page)


JAMF_EVENT = {
    "event": {"managementId": "c9f1b2", "targetType": "COMPUTER", "udid": "5A1E0C4B-1111-2222-3333-444455556666",
              "deviceName": "Alice's Mac", "serialNumber": "C02XYZ"},
    "webhook": {"eventTimestamp": 1700000000000, "id": 3, "name": "gateway", "webhookEvent": "SCEPChallenge"},
}
JAMF_XML = (
    "<JSSEvent><webhook><id>3</id><name>gateway</name><webhookEvent>SCEPChallenge</webhookEvent></webhook>"
    "<event><udid>5A1E0C4B-1111-2222-3333-444455556666</udid><serialNumber>C02XYZ</serialNumber></event></JSSEvent>"
)


@pytest.mark.parametrize("body,content_type", [(json.dumps(JAMF_EVENT), "application/json"),
                                               (JAMF_XML, "text/xml")], ids=["json", "xml"])
async def test_jamf_webhook_answers_with_a_challenge_bound_to_the_udid(env: Env, body: str, content_type: str) -> None:
    await allow_plain_http(env, webhook_bind_cn="udid")
    async with env.client.post("/scep/scep/webhook/jamf", data=body,
                               headers={**basic(), "Content-Type": content_type}) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        challenge = await resp.text()
    assert re.fullmatch(r"[0-9A-F]{16}", challenge)
    wrong = await enroll_with(env, challenge, "some-other-device")
    assert wrong.fail_info is FailInfo.BAD_REQUEST
    right = await enroll_with(env, challenge, "5A1E0C4B-1111-2222-3333-444455556666")
    assert right.status is PkiStatus.SUCCESS
    entities = await env.core.list_end_entities(protocol_config="scep")
    device = next(e for e in entities if e.name == "5A1E0C4B-1111-2222-3333-444455556666")
    assert device.attributes["serialNumber"] == "C02XYZ"


async def test_jamf_webhook_refuses_other_events_and_strangers(env: Env) -> None:
    await allow_plain_http(env)
    other = dict(JAMF_EVENT, webhook=dict(JAMF_EVENT["webhook"], webhookEvent="ComputerAdded"))
    async with env.client.post("/scep/scep/webhook/jamf", json=other, headers=basic()) as resp:
        assert resp.status == 400
    async with env.client.post("/scep/scep/webhook/jamf", json=JAMF_EVENT) as resp:
        assert resp.status == 401
    async with env.client.post("/scep/scep/webhook/jamf", data="{not json", headers=basic()) as resp:
        assert resp.status == 400
    assert await env.repo.list_challenges("scep", env.clock()) == []


# --- admin API ---------------------------------------------------------------------------


@pytest.fixture
async def admin(env: Env, aiohttp_client: Any) -> tuple[TestClient, dict[str, Any]]:
    await env.core.insert_api_key(ApiKeyRecord(id="k1", name="ops", key_sha256=api_key_hash(API_KEY)))
    app = create_admin_app(env.gw)
    ADAPTER.mount_admin(app)
    client = await aiohttp_client(app)
    async with client.get("/openapi.json") as resp:
        doc = await resp.json()
    return client, doc


def check_schema(doc: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    response = doc["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)


async def test_admin_api_routes_are_documented_and_authenticated(admin: tuple[TestClient, dict[str, Any]]) -> None:
    client, doc = admin
    validate(doc)
    for path in ("/scep/{id}/challenges", "/scep/{id}/static-challenge", "/scep/{id}/challenge-admins/{username}",
                 "/scep/{id}/ra"):
        assert path in doc["paths"]
    async with client.post("/scep/scep/challenges", json={}) as resp:
        assert resp.status == 401


async def test_admin_api_issues_a_bound_challenge_that_enrolls(env: Env, admin: tuple[TestClient, dict[str, Any]]) -> None:
    client, doc = admin
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with client.post("/scep/scep/challenges", json={"subject": "CN=api-device", "ttl_seconds": 600},
                           headers=auth) as resp:
        assert resp.status == 201 and resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    check_schema(doc, "/scep/{id}/challenges", "post", 201, body)
    assert body["subject"] == "CN=api-device"
    async with client.get("/scep/scep/challenges", headers=auth) as resp:
        listed = await resp.json()
    check_schema(doc, "/scep/{id}/challenges", "get", 200, listed)
    assert listed["items"][0]["subject"] == "CN=api-device" and "challenge" not in listed["items"][0]
    assert (await enroll_with(env, body["challenge"], "api-device")).status is PkiStatus.SUCCESS
    async with client.post("/scep/scep/challenges", json={"subject": "not a DN"}, headers=auth) as resp:
        assert resp.status == 400
    async with client.post("/scep/nosuch/challenges", json={}, headers=auth) as resp:
        assert resp.status == 404
    async with client.post("/scep/scep/challenges", json={"ttl": 5}, headers=auth) as resp:
        assert resp.status == 400


async def test_admin_api_static_challenge_and_admins(env: Env, admin: tuple[TestClient, dict[str, Any]]) -> None:
    client, doc = admin
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with client.put("/scep/scep/static-challenge", json={"challenge": "rotated-static-1"}, headers=auth) as resp:
        assert resp.status == 200 and (await resp.json()) == {"challenge": "rotated-static-1"}
    assert (await enroll_with(env, "rotated-static-1")).status is PkiStatus.SUCCESS
    from .conftest import STATIC

    assert (await enroll_with(env, STATIC)).fail_info is FailInfo.BAD_REQUEST  # the old one is gone
    async with client.put("/scep/scep/challenge-admins/jamf", json={}, headers=auth) as resp:
        created = await resp.json()
    check_schema(doc, "/scep/{id}/challenge-admins/{username}", "put", 200, created)
    await allow_plain_http(env)
    async with env.client.get("/certsrv/mscep_admin/", headers=basic("jamf", created["password"])) as resp:
        assert resp.status == 200
    async with client.delete("/scep/scep/challenge-admins/jamf", headers=auth) as resp:
        assert resp.status == 204
    async with env.client.get("/certsrv/mscep_admin/", headers=basic("jamf", created["password"])) as resp:
        assert resp.status == 401
    async with client.delete("/scep/scep/static-challenge", headers=auth) as resp:
        assert resp.status == 204
    assert (await enroll_with(env, "rotated-static-1")).fail_info is FailInfo.BAD_REQUEST


async def test_admin_api_ra_renewal(env: Env, admin: tuple[TestClient, dict[str, Any]]) -> None:
    client, doc = admin
    auth = {"Authorization": f"Bearer {API_KEY}"}
    old_ra = await env.ra_certificate()
    async with client.post("/scep/scep/ra", json={"role": "current"}, headers=auth) as resp:
        assert resp.status == 201
        check_schema(doc, "/scep/{id}/ra", "post", 201, await resp.json())
    async with client.get("/scep/scep/ra", headers=auth) as resp:
        roles = sorted(r["role"] for r in (await resp.json())["items"])
    assert roles == ["current", "retired"]
    new_ra = await env.ra_certificate()
    assert new_ra != old_ra
    # a client still holding the old RA certificate can enroll (the retired key decrypts);
    # the answer is signed by the new RA
    device = await env.device()
    device.recipient = old_ra
    rep = await env.post(device.pkcs_req(make_csr(device.key, "late-ra", challenge="static-challenge-0123"))[0])
    assert rep.status is PkiStatus.SUCCESS and rep.signer == new_ra
    async with client.post("/scep/scep/ra", json={"role": "next"}, headers=auth) as resp:
        assert resp.status == 400  # no next_ca configured


async def test_https_app_mounts_and_documents_the_scep_admin_routes(env: Env, aiohttp_client: Any) -> None:
    from gateway.web.app import create_https_app

    app: web.Application = create_https_app(env.gw)
    client = await aiohttp_client(app)
    async with client.get("/admin/openapi.json") as resp:
        doc = await resp.json()
    prefix = doc["servers"][0]["url"]
    mounted = {
        (r.method, r.resource.canonical) for r in app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith(prefix + "/") and r.method != "HEAD"
    }
    assert ("POST", "/admin/scep/{id}/challenges") in mounted
    assert mounted == {(m.upper(), prefix + p) for p, ops in doc["paths"].items() for m in ops}


async def test_head_never_hands_out_a_challenge(env: Env) -> None:
    await allow_plain_http(env)
    async with env.client.head("/certsrv/mscep_admin/", headers=basic()) as resp:
        assert resp.status == 405
    assert await env.repo.list_challenges("scep", env.clock()) == []
