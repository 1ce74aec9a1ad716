"""One commit per request where a request writes anyway, and finalize as two units of work.

Handlers that write (newOrder, challenge, finalize) record their nonce inside their
own transaction; a replay of the same JWS must still be refused and write nothing.
Finalize commits the claim with the nonce, then the certificate with its audit event
and the order's move to valid.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from conformance.acme.support import Http01Responder, RawClient, b64url, make_csr, new_config
from gateway.store.records import EventFilter

from .test_server import authorize, counts

Pair = tuple[Any, Any]


@contextmanager
def commits(gw: Any) -> Iterator[collections.Counter[str]]:
    """Count committed write transactions on the gateway's store while the block runs."""
    seen: collections.Counter[str] = collections.Counter()
    engines = {gw.store.engine.sync_engine, gw.store.write_engine.sync_engine}

    def on_commit(conn: Any) -> None:
        seen["commit"] += 1

    for engine in engines:
        event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "commit", on_commit)


async def test_replayed_writes_are_bad_nonces_and_change_nothing(gateway: Pair) -> None:
    gw, info = gateway
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
            assert seen["commit"] == 2  # nonce + claim; certificate + event + order valid
            serial = done.json["certificate"].rsplit("/", 1)[1]
            issued = await gw.store.list_events(EventFilter(serial=serial))
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
