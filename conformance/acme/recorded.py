"""Recording real ACME client exchanges and checking them with the server's own parsers.

A tap on the ACME sub-app (``protocols.acme.wfe.TAPS``) captures request and
response bytes while a real client runs. :func:`verify_exchanges` checks a
newAccount/newOrder pair the way the server does: strict JWS parsing, the
account key's signature, ``url`` headers, ``kid`` equal to the account URL the
server returned, and payloads through the same identifier/contact parsers.
The ordinary suite runs it over the files in ``fixtures/acme/`` on every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from conformance.harness import FIXTURES, Exchange, load_exchanges, save_exchange

FIXTURE_DIR = FIXTURES / "acme"
RECORD_ENV = "GATEWAY_RECORD_FIXTURES"


class Recorder:
    """Collects exchanges for the named routes while installed as a tap."""

    def __init__(self, client: str, routes: dict[str, str], meta: dict[str, Any]) -> None:
        self.client = client
        self.routes = routes  # route name -> exchange name
        self.meta = meta
        self.exchanges: dict[str, Exchange] = {}

    def __call__(self, request: web.Request, body: bytes, response: web.Response) -> None:
        name = self.routes.get(request.match_info.route.name or "")
        if name is None or name in self.exchanges:
            return
        self.exchanges[name] = Exchange(
            name=name, client=self.client, method=request.method, path=request.path_qs,
            request_headers={k: v for k, v in request.headers.items() if k.lower() in ("content-type", "user-agent")},
            request_body=body, response_status=response.status,
            response_headers={k: v for k, v in response.headers.items()
                              if k.lower() in ("content-type", "location", "replay-nonce")},
            response_body=bytes(response.body) if isinstance(response.body, (bytes, bytearray)) else b"",
            meta={**self.meta, "url": f"https://{request.host}{request.path_qs}"},
        )

    def __enter__(self) -> "Recorder":
        from protocols.acme.wfe import TAPS

        TAPS.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        from protocols.acme.wfe import TAPS

        TAPS.remove(self)

    def save(self, directory: Path = FIXTURE_DIR) -> list[Path]:
        return [save_exchange(directory, ex) for ex in self.exchanges.values()]


def verify_exchanges(account: Exchange, order: Exchange) -> dict[str, Any]:
    """Check a recorded newAccount + newOrder pair; returns what was learned (for assertions)."""
    from protocols.acme import jws
    from protocols.acme.identifiers import parse_identifiers
    from protocols.acme.wfe.accounts import parse_contacts

    new_account = jws.parse(account.request_body)
    assert new_account.jwk is not None and new_account.kid is None and new_account.nonce
    key = jws.load_jwk(new_account.jwk)
    jws.verify(new_account, key)
    assert new_account.url == account.meta["url"] and urlsplit(new_account.url).path == account.path
    payload = new_account.json_payload()
    contacts = parse_contacts(payload.get("contact"))
    assert account.response_status == 201
    account_url = account.response_headers["Location"]
    assert json.loads(account.response_body)["status"] == "valid"

    new_order = jws.parse(order.request_body)
    assert new_order.kid == account_url and new_order.jwk is None and new_order.nonce
    assert new_order.nonce != new_account.nonce
    jws.verify(new_order, key)
    assert new_order.url == order.meta["url"]
    identifiers = parse_identifiers(new_order.json_payload()["identifiers"])
    assert order.response_status == 201
    order_doc = json.loads(order.response_body)
    assert [i.to_json() for i in identifiers] == order_doc["identifiers"]
    return {"thumbprint": jws.thumbprint(key), "contacts": contacts, "identifiers": identifiers,
            "account_url": account_url, "payload": new_order.json_payload()}


def recorded(client: str, directory: Path = FIXTURE_DIR) -> dict[str, Exchange]:
    return {ex.name: ex for ex in load_exchanges(directory) if ex.client == client}

