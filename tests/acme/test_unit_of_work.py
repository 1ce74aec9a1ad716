"""One commit per request where a request writes anyway; finalize is one unit of work.

With nonces in the store (replicas), handlers that write (newOrder, challenge, finalize)
record their nonce inside their own transaction; without replicas nonces live in memory.
In both, a replay of the same JWS must be refused and write nothing. Finalize commits
the certificate, its audit event and the order's move to valid together (plus, with
nonces in the store, the nonce); two finalizes racing for one order issue one
certificate, and whoever got it was told so.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event

from conformance.acme.support import Http01Responder, RawClient, b64url, make_csr, new_config, served
from gateway.store.records import CertificateFilter, EventFilter

from .test_server import authorize, counts

Pair = tuple[Any, Any]


@contextmanager
def commits(gw: Any) -> Iterator[collections.Counter[str]]:
    """Count committed write transactions on the gateway's store while the block runs."""
    seen: collections.Counter[str] = collections.Counter()
    engines = set(gw.store.sync_engines)

    def on_commit(conn: Any) -> None:
        seen["commit"] += 1

    for engine in engines:
        event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "commit", on_commit)


async def test_replayed_writes_are_bad_nonces_and_change_nothing(either_gateway: Pair) -> None:
    gw, info = either_gateway
    nonces_in_store = gw.config.store_has_replicas
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            nonce = await c.nonce()
            first = await c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "a.example.test"}]},
                                 nonce=nonce)
            assert first.status == 201
            before = await counts(gw)
            replay = await c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "a.example.test"}]},
                                  nonce=nonce)
            assert replay.status == 400 and replay.problem == "badNonce"
            assert await counts(gw) == before

            await authorize(c, first.json, web01)
            ready = await c.poll(first.location, ("ready", "invalid"))
            assert ready.json["status"] == "ready"
            der, _ = make_csr(["a.example.test"])
            nonce = await c.nonce()
            with commits(gw) as seen:
                done = await c.post(ready.json["finalize"], {"csr": b64url(der)}, nonce=nonce)
            assert done.status == 200 and done.json["status"] == "valid"
            # certificate + event + order valid (+ with store nonces, the nonce): one transaction
            assert seen["commit"] == 1, f"nonces in store: {nonces_in_store}"
            serial = done.json["certificate"].rsplit("/", 1)[1]
            async with gw.store.read() as q:
                issued = await q.events.list(EventFilter(serial=serial))
            assert [(e.type, e.status) for e in issued] == [("issue", "success")]

            before = await counts(gw)
            replay = await c.post(ready.json["finalize"], {"csr": b64url(der)}, nonce=nonce)
            assert replay.status == 400 and replay.problem == "badNonce"
            assert await counts(gw) == before


async def test_a_refused_finalize_still_uses_up_its_nonce(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with RawClient(info, cid) as c:
        await c.register()
        order = await c.order("b.example.test")
        assert order.status == 201
        der, _ = make_csr(["b.example.test"])
        nonce = await c.nonce()
        early = await c.post(order.json["finalize"], {"csr": b64url(der)}, nonce=nonce)
        assert early.status == 403 and early.problem == "orderNotReady"
        again = await c.post(order.json["finalize"], {"csr": b64url(der)}, nonce=nonce)
        assert again.status == 400 and again.problem == "badNonce"


async def test_racing_finalizes_issue_one_certificate(either_gateway: Pair) -> None:
    gw, info = either_gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            reply = await c.order("race.example.test")
            order = reply.json
            await authorize(c, order, web01)
            ready = await c.poll(reply.location, ("ready", "invalid"))
            assert ready.json["status"] == "ready"
            der, _ = make_csr(["race.example.test"])
            nonces = [await c.nonce() for _ in range(4)]
            answers = await asyncio.gather(*(c.post(order["finalize"], {"csr": b64url(der)}, nonce=n)
                                             for n in nonces))
    statuses = sorted((a.status, a.problem) for a in answers)
    assert statuses[0] == (200, "")
    assert statuses[1:] == [(403, "orderNotReady")] * 3, statuses
    async with gw.store.read() as q:
        certs = await q.certificates.list(CertificateFilter(protocol_config=cid))
    assert len(certs) == 1
    async with gw.store.read() as q:
        issued = await q.events.list(EventFilter(protocol_config=cid, type="issue", status="success"))
    assert len(issued) == 1


async def _ready_order(c: RawClient, web01: Http01Responder, name: str) -> dict[str, Any]:
    reply = await c.order(name)
    assert reply.status == 201, reply.json
    await authorize(c, reply.json, web01)
    ready = await c.poll(reply.location, ("ready", "invalid"))
    assert ready.json["status"] == "ready"
    return {**ready.json, "url": reply.location}


async def test_a_finalize_whose_nonce_was_used_meanwhile_issues_nothing(tmp_path: Path) -> None:
    """Nonces in the store: the finalize nonce is recorded in the issuance transaction, so
    a finalize that loses its nonce to another request (a replay on another replica)
    commits no certificate, instead of answering badNonce for one it got."""
    async with served(tmp_path, replicas="yes") as (gw, info), Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            order = await _ready_order(c, web01, "lost-nonce.example.test")
            der, _ = make_csr(["lost-nonce.example.test"])
            nonce = await c.nonce()
            assert (await c.post(order["url"], nonce=nonce)).status == 200  # someone else uses it first
            lost = await c.post(order["finalize"], {"csr": b64url(der)}, nonce=nonce)
            async with gw.store.read() as q:
                certs = await q.certificates.list(CertificateFilter(protocol_config=cid))
            assert (lost.status == 200) == (len(certs) == 1), (lost.status, lost.problem, len(certs))
            assert lost.status == 400 and lost.problem == "badNonce" and certs == []
            assert (await c.post(order["url"])).json["status"] == "ready"
            done = await c.post(order["finalize"], {"csr": b64url(der)})
            assert done.status == 200 and done.json["status"] == "valid"
    async with gw.store.read() as q:
        assert len(await q.certificates.list(CertificateFilter(protocol_config=cid))) == 1


async def test_replayed_finalizes_racing_on_one_nonce_issue_once_and_say_so(either_gateway: Pair) -> None:
    """The same finalize JWS sent concurrently: exactly one certificate, and the request
    that got it is the one answered with success (every other one: badNonce)."""
    gw, info = either_gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            for n in range(3):  # a few rounds: the interleaving differs between them
                name = f"replay{n}.example.test"
                order = await _ready_order(c, web01, name)
                der, _ = make_csr([name])
                nonce = await c.nonce()
                answers = await asyncio.gather(*(c.post(order["finalize"], {"csr": b64url(der)}, nonce=nonce)
                                                 for _ in range(4)))
                outcomes = sorted((a.status, a.problem) for a in answers)
                assert outcomes == [(200, "")] + [(400, "badNonce")] * 3, outcomes
                won = next(a for a in answers if a.status == 200)
                assert won.json["status"] == "valid"
                serial = won.json["certificate"].rsplit("/", 1)[1]
                async with gw.store.read() as q:
                    certs = await q.certificates.list(CertificateFilter(protocol_config=cid))
                assert [r.serial for r in certs if name in " ".join(r.sans)] == [serial]
