"""EAB keys through the admin API and the CLI, the ``gateway info`` entries, and EAB at newAccount."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import josepy
from openapi_spec_validator import validate

from conformance.acme.support import RawClient, _template, new_config, sign_jws
from conformance.harness import GatewayInfo, run_cli
from protocols.acme import schema
from protocols.acme.nonces import b64url_decode

Pair = tuple[Any, GatewayInfo]


async def admin(info: GatewayInfo, method: str, path: str, body: Any = None, *, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key or info.api_key}"}
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"{info.https}/admin{path}", json=body, headers=headers,
                             ssl=info.ssl_context()) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None


def binding(client: RawClient, kid: str, hmac_key: str, url: str | None = None) -> dict[str, str]:
    """An externalAccountBinding as RFC 8555 section 7.3.4 builds it."""
    secret = josepy.JWKOct(key=b64url_decode(hmac_key))
    return sign_jws(client.key.public_key().to_partial_json(), secret, url or client.directory["newAccount"],
                    nonce=None, kid=kid, alg="HS256", embed_jwk=False)


async def test_eab_keys_via_the_admin_api(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw, eab_required=True)
    status, _ = await admin(info, "POST", f"/acme/{cid}/eab-keys", {}, key="wrong")
    assert status == 401
    status, created = await admin(info, "POST", f"/acme/{cid}/eab-keys",
                                  {"identifiers": ["*.corp.example", "10.0.0.0/8"], "label": "team A"})
    assert status == 201 and created["kid"].startswith("kid-") and created["label"] == "team A"
    secret = b64url_decode(created["hmac_key"])
    assert len(secret) == 32
    async with gw.store.engine.connect() as conn:
        row = (await conn.execute(schema.eab_keys.select())).all()
    stored = [r for r in row if r.kid == created["kid"]][0].hmac_key_encrypted
    assert created["hmac_key"] not in stored and secret.hex() not in stored
    status, listed = await admin(info, "GET", f"/acme/{cid}/eab-keys")
    assert status == 200 and [k["kid"] for k in listed["items"]] == [created["kid"]]
    assert "hmac_key" not in json.dumps(listed)
    for bad_path in ("/acme/nope/eab-keys", "/acme/scep/eab-keys"):
        assert (await admin(info, "POST", bad_path, {}))[0] == 404
    assert (await admin(info, "POST", f"/acme/{cid}/eab-keys", {"identifiers": ["bad name"]}))[0] == 400
    assert (await admin(info, "POST", f"/acme/{cid}/eab-keys", {"colour": "red"}))[0] == 400

    async with RawClient(info, cid) as c:
        required = await c.register()
        assert required.status == 403 and required.problem == "externalAccountRequired"
        reply = await c.register(externalAccountBinding=binding(c, created["kid"], created["hmac_key"]))
        assert reply.status == 201, reply.json
        outside = await c.order("www.example.test", "10.1.1.1")
        assert outside.problem == "rejectedIdentifier"
        assert [s["identifier"]["value"] for s in outside.json["subproblems"]] == ["www.example.test"]
        assert (await c.order("a.corp.example", "10.1.1.1")).status == 201
        status, accounts = await admin(info, "GET", f"/acme/{cid}/accounts")
        assert accounts["items"][0]["eab_kid"] == created["kid"] and accounts["items"][0]["status"] == "valid"
        assert (await admin(info, "DELETE", f"/acme/{cid}/eab-keys/{created['kid']}"))[0] == 204
        locked = await c.order("b.corp.example")
        assert locked.problem == "unauthorized" and "deactivated" in locked.json["detail"]
    assert (await admin(info, "DELETE", f"/acme/{cid}/eab-keys/kid-unknown"))[0] == 404


async def test_admin_openapi_documents_the_acme_routes(gateway: Pair) -> None:
    _, info = gateway
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{info.https}/admin/openapi.json", ssl=info.ssl_context()) as resp:
            doc = await resp.json()
    validate(doc)
    assert set(doc["paths"]["/acme/{config}/eab-keys"]) == {"get", "post"}
    assert "delete" in doc["paths"]["/acme/{config}/eab-keys/{kid}"]
    assert "hmac_key" in doc["components"]["schemas"]["AcmeEabKeyCreated"]["properties"]


def test_cli_creates_lists_and_revokes_eab_keys(tmp_path: Path) -> None:
    import asyncio

    data = tmp_path / "data"
    shutil.copytree(asyncio.run(_template()), data)
    out = run_cli("acme", "eab", "create", "--config", "acme-eab", "--identifiers", "a.example.test, *.b.example.test",
                  data_dir=data)
    key = dict(line.split(":", 1) for line in out.stdout.splitlines())
    key = {k.strip(): v.strip() for k, v in key.items()}
    assert key["allowed"] == "a.example.test, *.b.example.test" and "shown only now" in out.stderr
    assert len(b64url_decode(key["hmac_key"])) == 32
    revoked = run_cli("acme", "eab", "revoke", key["kid"], "--config", "acme-eab", data_dir=data)
    assert revoked.returncode == 0 and key["kid"] in revoked.stdout
    listed = run_cli("acme", "eab", "list", "--config", "acme-eab", data_dir=data).stdout
    assert f"{key['kid']}  revoked" in listed and key["hmac_key"] not in listed
    bad = run_cli("acme", "eab", "create", "--identifiers", "not a name", data_dir=data, check=False)
    assert bad.returncode == 1 and "--identifiers" in bad.stderr and "Traceback" not in bad.stderr


async def test_info_lists_both_dev_directories_with_the_dev_key(gateway: Pair) -> None:
    gw, info = gateway
    entries = {e["config"]: e for e in info.data["protocols"]["acme"]}
    assert entries["acme"] == {"config": "acme", "directory": f"{info.https}/acme/acme/directory", "eab": None}
    dev = entries["acme-eab"]["eab"]
    assert set(dev) == {"kid", "hmac_key"}
    async with RawClient(info, "acme-eab") as c:
        assert c.directory["meta"]["externalAccountRequired"] is True
        reply = await c.register(externalAccountBinding=binding(c, dev["kid"], dev["hmac_key"]))
        assert reply.status == 201
    async with RawClient(info, "acme") as c:
        assert c.directory["meta"]["externalAccountRequired"] is False
        assert (await c.register()).status == 201
