"""An enrollment's database work: per-configuration data comes from a cache checked
against the store's generations (in the same read as the transactionID), the
transactionID is claimed before anything is issued, and the certificate, its audit
event and the settled transactionID commit together."""

from __future__ import annotations

import collections
from typing import Any

from sqlalchemy import event

from gateway.store.records import EventFilter
from protocols.scep.types import PkiStatus

from conformance.scep.simulator import make_csr

from .conftest import STATIC, Env
from .test_challenges import enroll_with


async def test_an_enrollment_commits_once_for_its_certificate(env: Env) -> None:
    assert (await enroll_with(env, STATIC, cn="warm-up")).status is PkiStatus.SUCCESS
    device = await env.device()  # the test's own look at the RA certificate, not counted
    body = device.pkcs_req(make_csr(device.key, "counted", challenge=STATIC))[0]
    seen: collections.Counter[str] = collections.Counter()
    engines = set(env.gw.store.sync_engines)

    def on_begin(conn: Any) -> None:
        seen["write" if conn.get_execution_options().get("gateway_write") else "read"] += 1

    def on_commit(conn: Any) -> None:
        seen["commit"] += 1

    for engine in engines:
        event.listen(engine, "begin", on_begin)
        event.listen(engine, "commit", on_commit)
    try:
        rep = await env.post(body)
    finally:
        for engine in engines:
            event.remove(engine, "begin", on_begin)
            event.remove(engine, "commit", on_commit)
    assert rep.status is PkiStatus.SUCCESS
    # the claim on the transactionID (one certificate per transaction, however many
    # copies arrive at once); the new device's end entity; then certificate + event +
    # the transactionID settled on it
    assert seen["commit"] == 3, seen
    # generations with the transactionID, one-time challenge and end entity lookups;
    # config, RA set and static secrets come from the cache
    assert seen["read"] <= 3, seen
    serial = format(device.issued(rep)[0].serial_number, "x")
    events = await env.core.list_events(EventFilter(serial=serial))
    assert [(e.type, e.status) for e in events] == [("issue", "success")]
