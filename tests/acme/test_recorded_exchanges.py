"""Real certbot bytes from ``fixtures/acme/`` (see its README), checked on every run.

Offline, the recorded newAccount/newOrder pair must pass the server's own JWS,
key, identifier and contact checks. Online, certbot's recorded newAccount is
replayed into the ACME front end configured as in the recording (same directory
path and origin, nonces keyed by the recording's passphrase): the server accepts
it once, then refuses the replay as a used nonce.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from conformance.acme.recorded import FIXTURE_DIR, recorded, verify_exchanges
from conformance.harness import GatewayInfo
from protocols.acme import jws
from protocols.acme.keyring import Keyring
from protocols.acme.nonces import NonceMinter
from protocols.acme.wfe import create_app
from protocols.acme.wfe.context import RUNTIME

Pair = tuple[Any, GatewayInfo]


def certbot() -> tuple[Any, Any]:
    found = recorded("certbot")
    assert {"certbot-new-account", "certbot-new-order"} <= set(found), f"missing fixtures in {FIXTURE_DIR}"
    return found["certbot-new-account"], found["certbot-new-order"]


def test_recorded_certbot_requests_pass_the_server_checks() -> None:
    account, order = certbot()
    learned = verify_exchanges(account, order)
    assert account.meta["client_version"].startswith("certbot ")
    assert learned["contacts"] == ["mailto:ops@example.test"]
    assert sorted(i.value for i in learned["identifiers"]) == ["api.example.test", "www.example.test"]
    assert "CertbotACMEClient" in account.request_headers["User-Agent"]


async def test_replayed_certbot_new_account_is_accepted_once(gateway: Pair, aiohttp_client: Any) -> None:
    gw, _ = gateway
    account, _ = certbot()
    url = account.meta["url"]
    origin = url.split("/acme/")[0]
    config_id = account.meta["config"]
    await gw.authority.create_config(config_id, "acme", "issuing", ["tls-server"], settings={
        "external_url": origin, "nonce_lifetime": "P100Y",
    })
    acme = create_app(gw.door("acme"))
    app = web.Application()
    app.add_subapp("/acme/", acme)
    client = await aiohttp_client(app)
    rt = acme[RUNTIME]
    headers = {"Content-Type": "application/jose+json"}

    # with this gateway's own nonce key the recorded nonce is a forgery
    async with client.post(account.path, data=account.request_body, headers=headers) as resp:
        assert resp.status == 400 and (await resp.json(content_type=None))["type"].endswith(":badNonce")

    rt.nonces = NonceMinter(Keyring(account.meta["ca_passphrase"].encode()).nonce_key)
    async with client.post(account.path, data=account.request_body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        location = resp.headers["Location"]
    assert location.startswith(f"{origin}/acme/{config_id}/acct/") and body["status"] == "valid"
    stored = await rt.store.get_account(config_id, location.rsplit("/", 1)[1])
    recorded_key = jws.load_jwk(jws.parse(account.request_body).jwk)  # type: ignore[arg-type]
    assert stored is not None and stored.thumbprint == jws.thumbprint(recorded_key)
    assert stored.contact == json.loads(jws.parse(account.request_body).payload)["contact"]

    async with client.post(account.path, data=account.request_body, headers=headers) as resp:
        assert resp.status == 400 and (await resp.json(content_type=None))["type"].endswith(":badNonce")
