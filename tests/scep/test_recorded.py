"""Replay of real client exchanges recorded by the conformance suites (fixtures/scep/).

Each fixture holds the client's request bytes exactly as sent (GET with its URL-encoded
message, or a POST body), the gateway's answer at recording time, and the keys and
configuration of that run: the RA certificate and key, the challenge, the client's key.
The replay configures a fresh gateway with that RA and challenge, judges time checks at
the request's own signingTime, sends the same bytes over HTTP, and checks the answer the
way the client would: signed by the RA, addressed to it (transactionID, recipientNonce),
the expected status, and for SUCCESS a certificate for the CSR's key, encrypted to the
client with the cipher it used and opened with ``openssl cms -decrypt``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from yarl import URL

from conformance.harness import FIXTURES, Exchange, load_exchanges
from conformance.scep.simulator import openssl_decrypt, parse_cert_rep
from conformance.scep.support import CoreTables
from gateway.ca.local import certificate_record
from gateway.runtime import Gateway
from gateway.web.app import create_http_app
from protocols.scep import cms as scms
from protocols.scep.challenge import set_static_challenge
from protocols.scep.envelope import Recipient, open_envelope
from protocols.scep.message import parse_pki_message
from protocols.scep.ra import import_ra
from protocols.scep.repository import ScepRepository
from protocols.scep.service import SERVICE
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import Clock, make_gateway

EXCHANGES = [e for e in load_exchanges(FIXTURES / "scep") if "operation=PKIOperation" in e.path]


def test_fixtures_are_present() -> None:
    clients = {e.client for e in EXCHANGES}
    assert {"scepclient", "certmonger"} <= clients, "record them: GATEWAY_RECORD_FIXTURES=1 pytest conformance/scep"


def request_bytes(exchange: Exchange) -> bytes:
    if exchange.method == "POST":
        return exchange.request_body
    from protocols.scep.http import decode_message

    query = exchange.path.split("?", 1)[1]
    message = next(p.split("=", 1)[1] for p in query.split("&") if p.startswith("message="))
    return decode_message(message)


async def replay_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any,
                     meta: dict[str, Any]) -> tuple[Gateway, TestClient, Clock]:
    gw = await make_gateway(tmp_path, monkeypatch)
    repo = ScepRepository(gw.door("scep").tables)
    settings = {k: v for k, v in meta["settings"].items() if k in ("approval",)}
    await gw.authority.create_config(meta["config"], "scep", "issuing", ["device", "tls-client"], settings=settings)
    await import_ra(gw.door("scep"), repo, meta["config"], meta["ra_certificate"].encode(), meta["ra_key"].encode(),
                    force=True)  # a recording's RA may have expired since it was made
    await set_static_challenge(repo, meta["config"], meta["challenge"])
    clock = Clock()
    app = create_http_app(gw)
    app[SERVICE].clock = clock
    return gw, await aiohttp_client(app), clock


async def send(client: TestClient, exchange: Exchange) -> bytes:
    if exchange.method == "POST":
        resp = await client.post(exchange.path, data=exchange.request_body,
                                 headers={"Content-Type": exchange.request_headers.get("Content-Type", "")})
    else:
        resp = await client.get(URL(exchange.path, encoded=True))
    async with resp:
        assert resp.status == 200 and resp.content_type == "application/x-pki-message"
        return await resp.read()


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Gateway]]:
    opened: list[Gateway] = []
    yield opened
    for gw in opened:
        await gw.close()


@pytest.mark.parametrize("exchange", EXCHANGES, ids=[e.name for e in EXCHANGES])
async def test_recorded_exchange_replays(exchange: Exchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         aiohttp_client: Any, cleanup: list[Gateway]) -> None:
    meta = exchange.meta
    ra_cert = x509.load_pem_x509_certificate(meta["ra_certificate"].encode())
    ra_key = serialization.load_pem_private_key(meta["ra_key"].encode(), None)
    raw = request_bytes(exchange)
    msg = parse_pki_message(raw)
    opened_request = open_envelope(msg.content, [Recipient(ra_cert, ra_key)])  # type: ignore[arg-type]

    # what the gateway answered when the client was there
    recorded = parse_cert_rep(exchange.response_body)
    assert recorded.signer == ra_cert and recorded.status.name == meta["expect"]
    assert (recorded.transaction_id, recorded.recipient_nonce) == (msg.transaction_id, msg.sender_nonce)

    gw, client, clock = await replay_env(tmp_path, monkeypatch, aiohttp_client, meta)
    cleanup.append(gw)
    clock.fixed = msg.signing_time  # judged at the client's own time
    if meta.get("renewal"):
        # the certificate being renewed must be one this gateway issued: register it
        first = x509.load_pem_x509_certificate(meta["first_certificate"].encode())
        await CoreTables(gw).insert_certificate(certificate_record(
            first, ca_id="issuing", profile="device", entity_id=None, protocol_config=meta["config"],
            request_id=None))
    if meta.get("after_approval"):
        held = parse_cert_rep(await send(client, exchange))
        assert held.status is PkiStatus.PENDING
        (pending,) = await CoreTables(gw).list_requests(status="pending")
        await gw.authority.approve(pending.id, "replay-operator")

    rep = parse_cert_rep(await send(client, exchange))
    assert rep.signer == ra_cert
    assert (rep.transaction_id, rep.recipient_nonce, rep.message_type) == (msg.transaction_id, msg.sender_nonce, "3")
    assert rep.status.name == meta["expect"], rep.fail_text
    assert rep.digest == msg.digest_name
    if rep.status is PkiStatus.FAILURE:
        assert rep.fail_info is FailInfo(meta["fail_info"])
        return
    if rep.status is PkiStatus.PENDING:
        assert len(await CoreTables(gw).list_requests(status="pending")) == 1
        return
    assert msg.signer_certificate is not None and msg.signer_certificate.strict is not None
    client_key = serialization.load_pem_private_key(meta["client_key"].encode(), None)
    degenerate = openssl_decrypt(rep.envelope, msg.signer_certificate.strict, client_key)  # type: ignore[arg-type]
    (issued,) = scms.certificates_of_degenerate(degenerate)
    csr = x509.load_der_x509_csr(opened_request.plaintext)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert issued.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        csr.public_key().public_bytes(serialization.Encoding.DER, spki)
    # same cipher and key transport as the client used, and as recorded
    from .test_enrollment import envelope_algorithms

    assert envelope_algorithms(rep.envelope) == envelope_algorithms(recorded.envelope)
    assert envelope_algorithms(rep.envelope)[0] == opened_request.algorithms.content
