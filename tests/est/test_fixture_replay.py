"""Real clients' recorded EST exchanges (fixtures/est, from conformance/est) checked on every run.

For each recorded scenario:

1. the recorded bytes are checked as they are: the request bodies the client sent
   parse as EST requests; the responses the gateway gave that client have the
   exact wire form (Content-Type spelled exactly, base64 in lines of at most 76,
   certificates chaining to the CA of that run, empty 401/202 bodies);
2. the scenario is replayed against a fresh gateway set up as the recording
   says (label settings, Basic users, the client's key and certificate, trust
   anchors): every request, byte for byte, must get the same answer.

So the bytes curl and Bouncy Castle really send are exercised even on a machine
where neither client is installed.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from conformance.harness import FIXTURES, Exchange, load_exchanges, running_gateway
from gateway.ca.backend import RevocationReason
from protocols.est import csr as est_csr
from protocols.est import wire

from .helpers import ClientCredential, EstServer, core, csrattrs_items, make_csr, set_users, trust_at_listener

EXCHANGES = load_exchanges(FIXTURES / "est")
SCENARIOS: dict[str, list[Exchange]] = {
    name: sorted(group, key=lambda e: e.meta["step"])
    for name, group in itertools.groupby(sorted(EXCHANGES, key=lambda e: (e.client, e.meta["scenario"])),
                                         key=lambda e: f"{e.client}-{e.meta['scenario']}")
}


def test_fixtures_cover_both_clients_and_every_operation() -> None:
    ops = {(e.client, e.method, e.path.rsplit("/", 1)[1]) for e in EXCHANGES if e.response_status in (200, 204)}
    for client in ("curl", "bouncycastle"):
        for method, op in (("GET", "cacerts"), ("GET", "csrattrs"), ("POST", "simpleenroll"),
                           ("POST", "simplereenroll"), ("POST", "serverkeygen")):
            assert (client, method, op) in ops, (client, op)
    auth = {(e.client, e.meta["tls_client_certificate"], "Authorization" in e.request_headers)
            for e in EXCHANGES if e.response_status == 200 and e.method == "POST"}
    for client in ("curl", "bouncycastle"):
        assert (client, True, False) in auth and (client, False, True) in auth  # certificate, and Basic


def _header(exchange: Exchange, name: str) -> str | None:
    return next((v for k, v in exchange.response_headers.items() if k.lower() == name.lower()), None)


def _certs_only(body: bytes) -> list[x509.Certificate]:
    lines = body.split(b"\r\n")
    assert lines[-1] == b"" and all(0 < len(line) <= 76 for line in lines[:-1])
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body,
                                       policy=email.policy.HTTP)
    return {p["Content-Type"].replace('"', ""): base64.b64decode(p.get_payload()) for p in message.iter_parts()}


def _check_recorded(exchange: Exchange) -> None:
    status, body = exchange.response_status, exchange.response_body
    op = exchange.path.rsplit("/", 1)[1]
    if exchange.method == "POST" and status != 400:
        request = est_csr.parse(wire.decode_body(exchange.request_body))  # what the client really sent
        assert request.csr.subject is not None
    if status == 401:
        assert body == b"" and _header(exchange, "WWW-Authenticate").startswith('Basic realm="EST ')
    elif status == 202:
        assert body == b"" and int(_header(exchange, "Retry-After")) >= 1
    elif status == 200 and op in ("cacerts", "simpleenroll", "simplereenroll"):
        assert _header(exchange, "Content-Type") == "application/pkcs7-mime; smime-type=certs-only"
        assert _header(exchange, "Content-Transfer-Encoding") == "base64"
        certs = _certs_only(body)
        chain = x509.load_pem_x509_certificates(exchange.meta["ca_chain_pem"].encode())
        for cert in certs:
            issuer = next(c for c in chain if c.subject == cert.issuer)
            cert.verify_directly_issued_by(issuer)
    elif status == 200 and op == "csrattrs":
        assert _header(exchange, "Content-Type") == "application/csrattrs"
        assert csrattrs_items(base64.b64decode(body))
    elif status == 200 and op == "serverkeygen":
        parts = _multipart(_header(exchange, "Content-Type"), body)
        key = serialization.load_der_private_key(parts["application/pkcs8"], None)
        [cert] = pkcs7.load_der_pkcs7_certificates(parts[wire.CERTS_ONLY])
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    else:
        assert status >= 400 and _header(exchange, "Content-Type").startswith("text/plain")


@dataclass
class Replay:
    server: EstServer
    cred: ClientCredential | None


async def _setup(server: EstServer, meta: dict[str, Any], tmp: Path) -> ClientCredential | None:
    gw, label = server.gw, meta["label"]
    if await core(gw).config(label) is None:
        await gw.authority.create_config(label, "est", "issuing", meta["label_profiles"], None,
                                         settings=meta["label_settings"])
    else:
        await core(gw).update_config(label, settings={**meta["label_settings"], "default": True})
    await set_users(gw, label, meta["users"])
    spec = meta.get("client_certificate")
    if spec is None:
        return None
    key = serialization.load_pem_private_key(spec["key_pem"].encode(), None)
    recorded = x509.load_pem_x509_certificate(spec["certificate_pem"].encode())
    if spec["kind"] == "anchored":
        return server._files("replay-client", recorded, key)
    # Issued by the recording gateway's CA: the same key and names, issued by this one.
    sans = est_csr.subject_alt_names(recorded)
    csr, _ = make_csr(None, key=key, subject=recorded.subject)
    if sans:
        csr = x509.CertificateSigningRequestBuilder().subject_name(recorded.subject).add_extension(
            x509.SubjectAlternativeName(sans), critical=False).sign(key, csr.signature_hash_algorithm)
    issued = await gw.authority.issue_direct("issuing", csr, "device", actor="replay")
    if meta.get("revoked"):
        await gw.authority.revoke(format(issued.serial, "x"), RevocationReason.superseded, actor="replay")
    return server._files("replay-client", issued.certificate, key)


async def _send(server: EstServer, exchange: Exchange, cred: ClientCredential | None) -> tuple[int, Any, bytes]:
    headers = {k: v for k, v in exchange.request_headers.items()
               if k.lower() not in ("content-length", "connection", "accept-encoding")}
    connector = aiohttp.TCPConnector(ssl=server.ssl(cred if exchange.meta["tls_client_certificate"] else None),
                                     force_close=True)
    async with aiohttp.ClientSession(connector=connector, skip_auto_headers=["Content-Type", "User-Agent"]) as s:
        async with s.request(exchange.method, server.info.https + exchange.path,
                             data=exchange.request_body if exchange.method == "POST" else None,
                             headers=headers) as resp:
            return resp.status, resp.headers, await resp.read()


def _same_answer(exchange: Exchange, status: int, headers: Any, body: bytes) -> None:
    assert status == exchange.response_status, (exchange.name, body[:300])
    for name in ("Content-Type", "Content-Transfer-Encoding", "WWW-Authenticate", "Retry-After"):
        recorded = _header(exchange, name)
        if name == "Content-Type" and recorded and recorded.startswith("multipart/mixed"):
            assert headers[name].startswith("multipart/mixed; boundary=")
            assert set(_multipart(headers[name], body)) == set(_multipart(recorded, exchange.response_body))
        else:
            assert headers.get(name) == recorded, (exchange.name, name)
    op = exchange.path.rsplit("/", 1)[1]
    if status == 200 and op in ("simpleenroll", "simplereenroll", "cacerts"):
        assert [c.subject for c in _certs_only(body)] == [c.subject for c in _certs_only(exchange.response_body)] \
            or op == "cacerts" and {c.subject for c in _certs_only(body)} == \
            {c.subject for c in _certs_only(exchange.response_body)}
    if status == 200 and op == "csrattrs":
        assert body == exchange.response_body  # same settings, same DER


def test_recorded_fixtures_are_present() -> None:
    assert SCENARIOS, "no recorded EST fixtures in fixtures/est"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_recorded_scenario(scenario: str, data_dir: Path, tmp_path: Path) -> None:
    steps = SCENARIOS[scenario]
    for exchange in steps:
        _check_recorded(exchange)
    meta = steps[0].meta
    anchor = (meta.get("client_certificate") or {}).get("anchor_pem")
    if anchor:
        path = tmp_path / "recorded-anchor.pem"
        path.write_text(anchor)
        trust_at_listener(data_dir, path)
    async with running_gateway(data_dir) as (gw, info):
        server = EstServer(gw, info, tmp_path)
        cred = await _setup(server, meta, tmp_path)
        for exchange in steps:
            if exchange.response_status == 200 and meta["label_settings"].get("approval") == "manual":
                for held in await core(gw).requests(status="pending"):
                    await gw.authority.approve(held.id, "operator")  # as the operator did in the recording
            _same_answer(exchange, *await _send(server, exchange, cred))
