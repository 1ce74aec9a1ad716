"""Requests held for operator approval: 202 + Retry-After, and the retry that finds its answer."""

from __future__ import annotations

import uuid

from sqlalchemy import inspect

from gateway.store import Store
from protocols.est.pending import HeldRequest, PendingRequests, request_key
from protocols.est.schema import metadata, pending_requests

from .helpers import EstServer, b64, core, make_csr


async def test_held_request_answers_202_until_approved_then_the_certificate(est: EstServer) -> None:
    await est.label("held", users={"alice": "pw1", "bob": "pw2"}, approval="manual", retry_after=7)
    csr, key = make_csr("held-1", ["held-1.example"])
    first = await est.post("simpleenroll", b64(csr), label="held", auth=("alice", "pw1"))
    assert first.status == 202 and first.headers["Retry-After"] == "7" and first.body == b""
    [pending] = await core(est.gw).requests(status="pending")
    assert pending.protocol_config == "held"
    # A retry (even of a freshly signed CSR for the same key and names) maps to the same request.
    again, _ = make_csr("held-1", ["held-1.example"], key=key)
    assert (await est.post("simpleenroll", b64(again), label="held", auth=("alice", "pw1"))).status == 202
    assert len(await core(est.gw).requests()) == 1
    # Another client with the same CSR does not get alice's request.
    assert (await est.post("simpleenroll", b64(csr), label="held", auth=("bob", "pw2"))).status == 202
    assert len(await core(est.gw).requests()) == 2
    assert await est.issued("held") == 0

    issued = await est.gw.authority.approve(pending.id, "operator")
    done = await est.post("simpleenroll", b64(csr), label="held", auth=("alice", "pw1"))
    assert done.status == 200 and done.certificates[0].serial_number == issued.serial
    repeat = await est.post("simpleenroll", b64(csr), label="held", auth=("alice", "pw1"))
    assert repeat.status == 200 and repeat.certificates[0].serial_number == issued.serial
    assert await est.issued("held") == 1
    events = await est.events(protocol_config="held")
    assert {(e.type, e.status) for e in events} >= {("issue", "pending"), ("approve", "success")}


async def test_rejected_request_is_403_with_the_reason(est: EstServer) -> None:
    await est.label("held", users={"user": "p"}, approval="manual")
    csr, _ = make_csr("held-2")
    assert (await est.post("simpleenroll", b64(csr), label="held", auth=("user", "p"))).status == 202
    [pending] = await core(est.gw).requests(status="pending")
    await est.gw.authority.reject(pending.id, "operator", "unknown device")
    reply = await est.post("simpleenroll", b64(csr), label="held", auth=("user", "p"))
    assert reply.status == 403 and "unknown device" in reply.text
    assert await est.issued("held") == 0


async def test_reenroll_can_be_held_too(est: EstServer) -> None:
    await est.label("held", users={"user": "p"}, approval="manual", retry_after=1)
    cred = await est.client_cert("held-3")
    csr, _ = make_csr("held-3")
    reply = await est.post("simplereenroll", b64(csr), label="held", cert=cred)
    assert reply.status == 202 and reply.headers["Retry-After"] == "1"
    [pending] = await core(est.gw).requests(status="pending")
    await est.gw.authority.approve(pending.id, "operator")
    done = await est.post("simplereenroll", b64(csr), label="held", cert=cred)
    assert done.status == 200 and done.certificates[0].subject == cred.certificate.subject


def test_request_key_covers_key_subject_and_names() -> None:
    csr, key = make_csr("k-1", ["a.example"])
    assert request_key(csr) == request_key(make_csr("k-1", ["a.example"], key=key)[0])
    assert request_key(csr) != request_key(make_csr("k-2", ["a.example"], key=key)[0])
    assert request_key(csr) != request_key(make_csr("k-1", ["b.example"], key=key)[0])
    assert request_key(csr) != request_key(make_csr("k-1", ["a.example"])[0])


async def test_pending_store_round_trip_and_uniqueness(est: EstServer) -> None:
    door = est.gw.door("est")
    pending = PendingRequests(door.tables, door.clock)
    held = HeldRequest(uuid.uuid4().hex, "lbl", "basic:alice", "ab" * 32)
    assert await pending.find("lbl", "basic:alice", "ab" * 32) is None
    assert await pending.remember(held) is True
    assert await pending.find("lbl", "basic:alice", "ab" * 32) == held
    assert await pending.find("lbl", "basic:bob", "ab" * 32) is None
    duplicate = HeldRequest(uuid.uuid4().hex, "lbl", "basic:alice", "ab" * 32)
    assert await pending.remember(duplicate) is False  # a concurrent identical request
    await pending.forget(held.request_id)
    assert await pending.find("lbl", "basic:alice", "ab" * 32) is None


async def test_migration_creates_the_table_schema_py_describes(store: Store) -> None:
    def columns(connection):  # type: ignore[no-untyped-def]
        inspector = inspect(connection)
        return (
            {c["name"] for c in inspector.get_columns("est_pending_requests")},
            {tuple(u["column_names"]) for u in inspector.get_unique_constraints("est_pending_requests")},
            {i["name"] for i in inspector.get_indexes("est_pending_requests")},
        )

    async with store.engine.connect() as conn:
        names, uniques, indexes = await conn.run_sync(columns)
    assert names == {c.name for c in pending_requests.columns}
    assert ("label", "client", "request_key") in uniques
    assert {i.name for i in metadata.tables["est_pending_requests"].indexes} <= indexes
