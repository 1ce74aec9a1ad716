"""The Intune part of a SCEP configuration in the admin API, over the served gateway's
HTTPS listener with its API key: the values the Intune profiles need, as ``gateway scep
intune show`` prints them, and never the client secret (sealed or not)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema  # type: ignore[import-untyped]  # no stubs installed
from cryptography import x509
from openapi_spec_validator import validate

from .conftest import CA, CONFIG, IntuneEnv


async def call(env: IntuneEnv, path: str, *, key: bool = True) -> tuple[int, str, str]:
    """GET ``path`` (under the HTTPS listener) with the dev API key: status, content type, body."""
    info = env.served.info
    headers = {"Authorization": f"Bearer {info.api_key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{info.https}{path}", ssl=info.ssl_context(), headers=headers) as resp:
            return resp.status, resp.content_type, await resp.text()


async def document(env: IntuneEnv) -> dict[str, Any]:
    status, _, body = await call(env, "/admin/openapi.json", key=False)
    assert status == 200
    doc: dict[str, Any] = json.loads(body)
    return doc


def check_schema(doc: dict[str, Any], path: str, body: Any) -> None:
    schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)


async def test_the_admin_api_shows_what_the_intune_profiles_need(env: IntuneEnv) -> None:
    status, content_type, text = await call(env, f"/admin/scep/{CONFIG}/intune")
    assert status == 200 and content_type == "application/json", text
    body = json.loads(text)
    doc = await document(env)
    validate(doc)
    check_schema(doc, "/scep/{id}/intune", body)

    # what `gateway scep intune show` prints (its URL from config.toml, the served
    # gateway's from the ports the test gave it), and the Entra app of the connection
    shown = json.loads(await env.cli("scep", "intune", "show", "--config", CONFIG))
    assert body["scep_server_url"] == f"{env.served.info.http}/scep/{CONFIG}"
    assert shown["scep_server_url"].endswith(f"/scep/{CONFIG}")
    assert (body["config"], body["ca"], body["tenant"], body["client_id"]) == (
        CONFIG, CA, env.sim.tenant, env.sim.client_id)
    assert body["authority_url"] == body["graph_url"] == env.sim.base_url.rstrip("/")
    assert body["revocation_sync_seconds"] == 0

    # the chain: the configuration's CA first, its root last, the same as the file `show` names
    chain = x509.load_pem_x509_certificates(body["trusted_certificate_chain_pem"].encode())
    assert chain[0] == (await env.served.scep.context(CONFIG)).ca_certificate
    assert chain[-1].subject == chain[-1].issuer and len(chain) >= 2
    assert chain == x509.load_pem_x509_certificates(Path(shown["trusted_certificate_chain"]).read_bytes())

    # and as a download, where the view says
    assert body["trusted_certificate_chain_url"] == f"/admin/scep/{CONFIG}/intune/chain.pem"
    status, content_type, pem = await call(env, body["trusted_certificate_chain_url"])
    assert status == 200 and content_type == "application/x-pem-file"
    assert x509.load_pem_x509_certificates(pem.encode()) == chain

    # never the secret, not even sealed
    sealed = (await env.door.configuration(CONFIG)).settings["intune"]["client_secret"]
    assert env.sim.client_secret not in text and sealed not in text and "secret" not in body


async def test_the_intune_view_follows_a_changed_connection(env: IntuneEnv) -> None:
    await env.cli("scep", "intune", "set", "--config", CONFIG, "--tenant", "contoso.onmicrosoft.com",
                  "--revocation-sync-seconds", "600")
    status, _, text = await call(env, f"/admin/scep/{CONFIG}/intune")
    assert status == 200, text
    body = json.loads(text)
    assert body["tenant"] == "contoso.onmicrosoft.com" and body["revocation_sync_seconds"] == 600
    assert body["client_id"] == env.sim.client_id


async def test_only_intune_configurations_have_an_intune_view(env: IntuneEnv) -> None:
    for path in ("/admin/scep/scep/intune", "/admin/scep/scep/intune/chain.pem", "/admin/scep/nosuch/intune",
                 "/admin/scep/nosuch/intune/chain.pem"):
        status, _, text = await call(env, path)
        assert status == 404 and json.loads(text)["error"] == "not_found", (path, text)
    status, _, text = await call(env, "/admin/scep/scep/intune")
    assert "gateway scep intune set --config scep" in json.loads(text)["detail"]
    for path in (f"/admin/scep/{CONFIG}/intune", f"/admin/scep/{CONFIG}/intune/chain.pem"):
        status, _, _ = await call(env, path, key=False)
        assert status == 401
    doc = await document(env)
    assert {"/scep/{id}/intune", "/scep/{id}/intune/chain.pem"} <= set(doc["paths"])
    assert doc["paths"]["/scep/{id}/intune/chain.pem"]["get"]["responses"]["200"]["content"] == {
        "application/x-pem-file": {"schema": {"type": "string"}}}
