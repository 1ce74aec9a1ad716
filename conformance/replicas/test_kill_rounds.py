"""Nothing is lost when processes or connections die.

Three replicas on PostgreSQL behind haproxy under mixed ACME + SCEP + EST load: a random
replica is killed with SIGKILL and started again, ten rounds, and five times every
PostgreSQL backend of the gateways' database is terminated (``pg_terminate_backend``).
Then: every certificate a client received is in the store once and byte for byte, no
serial repeats, every stored certificate has its issuance event, CRL and OCSP agree
with the store, CRL numbers are one per CRL and increasing, and the clients saw only
retryable answers (a cut connection, a 503 with Retry-After, a SCEP PENDING). The same
kill rounds, without a proxy, for one process on SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from bench.gateway_setup import ACME_CONFIG, add_acme_config
from protocols.acme.settings import ALWAYS_VALID_ENV
from gateway.store import Store
from gateway.store.records import EventFilter, serial_hex
from tests.conftest import PG_URL, _asyncpg_dsn, fresh_pg_database

from .cluster import Cluster
from .load import Outcomes, run_load

ALWAYS_VALID = {ALWAYS_VALID_ENV: ACME_CONFIG}
"""The load's ACME configuration accepts challenges unvalidated: the load is the point here."""
ROUNDS = 10
TERMINATIONS = 5
ISSUANCE_EVENTS = {"issue", "internal_issue", "renew", "approve", "scep_ra_issue"}


async def _terminate_backends(database: str) -> int:
    admin = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        return int(await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", database))
    finally:
        await admin.close()


async def _chaos(cluster: Cluster, database: str | None) -> dict[str, int]:
    rng = random.Random(17)
    done = {"killed": 0, "terminated": 0}
    for round_ in range(ROUNDS):
        await asyncio.sleep(1.5)
        index = rng.randrange(cluster.size)
        cluster.kill(index)
        done["killed"] += 1
        if database is not None and round_ % 2 == 1 and done["terminated"] < TERMINATIONS:
            await _terminate_backends(database)
            done["terminated"] += 1
        await asyncio.sleep(0.5)
        await cluster.restart(index)
    return done


async def _admin(session: aiohttp.ClientSession, info: Any, method: str, path: str) -> aiohttp.ClientResponse:
    for _ in range(20):  # a replica may still be starting: retried like any client
        try:
            resp = await session.request(method, f"{info.https}/admin{path}", ssl=info.ssl_context(),
                                         headers={"Authorization": f"Bearer {info.api_key}"})
            await resp.read()
            if resp.status != 503:
                return resp
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"{method} {path} never answered")


async def _check(store_url: str, info: Any, out: Outcomes) -> None:
    assert out.violations == [], out.violations
    assert {client for client, _ in out.received} == {"acme", "scep", "est"}, out.received
    serials = [serial_hex(cert.serial_number) for _, cert in out.received]
    assert len(serials) == len(set(serials)), "a serial number was received twice"

    async with await Store.open(store_url) as store:
        async with store.read() as q:
            stored = {serial: await q.certificates.get(serial) for serial in serials}
            every = list(await q.certificates.list(limit=100_000))
            events = list(await q.events.list(EventFilter(), limit=1_000_000))
    for (_, cert), serial in zip(out.received, serials):
        rec = stored[serial]
        assert rec is not None, f"certificate {serial} a client received is not in the store"
        assert rec.der == cert.public_bytes(serialization.Encoding.DER)
    issued_events = {e.serial for e in events if e.type in ISSUANCE_EVENTS and e.status == "success"}
    missing = [r.serial for r in every if r.serial not in issued_events]
    assert missing == [], f"stored certificates without their issuance event: {missing}"

    # revoke a few through the load balancer, then CRL and OCSP (through it too) agree with the store
    by_ca: dict[str, list[x509.Certificate]] = {}
    for serial, (_, cert) in zip(serials, out.received):
        by_ca.setdefault(stored[serial].ca_id, []).append(cert)  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        for certs in by_ca.values():
            resp = await _admin(session, info, "POST", f"/certificates/{serial_hex(certs[0].serial_number)}/revoke")
            assert resp.status == 200, resp.status
        async with await Store.open(store_url) as store:
            for ca_id, certs in by_ca.items():
                crls = await asyncio.gather(*(_admin(session, info, "GET", f"/cas/{ca_id}/crl?force=true")
                                              for _ in range(4)))  # concurrently, on several replicas
                numbers = []
                for resp in crls:
                    crl = x509.load_der_x509_crl(await resp.read())
                    numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
                assert len(set(numbers)) == len(numbers), f"two CRLs of {ca_id} share a number: {numbers}"
                newest = x509.load_der_x509_crl(await crls[numbers.index(max(numbers))].read())
                async with store.read() as q:
                    revoked = {r.serial for r in await q.certificates.revoked(ca_id)}
                assert {serial_hex(r.serial_number) for r in newest} == revoked
                issuer = x509.load_pem_x509_certificate(Path(info.ca(ca_id)["certificate"]).read_bytes())
                for cert in certs[:5]:
                    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
                    encoded = quote(base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode(), safe="")
                    async with session.get(f"{info.http}/ocsp/{ca_id}/{encoded}") as resp:
                        answer = ocsp.load_der_ocsp_response(await resp.read())
                    expected = (ocsp.OCSPCertStatus.REVOKED if serial_hex(cert.serial_number) in revoked
                                else ocsp.OCSPCertStatus.GOOD)
                    assert answer.certificate_status == expected, (ca_id, cert.serial_number)


async def _kill_rounds(cluster: Cluster, store_url: str, database: str | None) -> tuple[Outcomes, dict[str, int]]:
    info = await cluster.start()
    await add_acme_config(cluster.replicas[0].data_dir)  # always-valid challenges: the load is the point
    await asyncio.to_thread(cluster.serve)
    try:
        stop = asyncio.Event()
        out = Outcomes()
        load = asyncio.create_task(run_load(info, f"{info.https}/acme/{ACME_CONFIG}/directory", stop, out))
        done = await _chaos(cluster, database)
        await asyncio.sleep(3)  # every replica back: the load completes what it was doing
        stop.set()
        await asyncio.wait_for(load, 180)
        await _check(store_url, info, out)
        return out, done
    finally:
        cluster.stop()


async def test_three_replicas_behind_haproxy_lose_nothing_to_kill_9_and_cut_connections(tmp_path: Path) -> None:
    async with fresh_pg_database("test_replicas") as url:  # fails under CI=true, skips elsewhere
        out, done = await _kill_rounds(Cluster(tmp_path, url, 3, env=ALWAYS_VALID), url, url.rsplit("/", 1)[1])
    assert done == {"killed": ROUNDS, "terminated": TERMINATIONS}
    print(f"received {len(out.received)} certificates; retried: {dict(out.retried)}")


async def test_one_process_on_sqlite_loses_nothing_to_kill_9(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, None, 1, env=ALWAYS_VALID)
    out, done = await _kill_rounds(cluster, f"sqlite+aiosqlite:///{cluster.work / 'replica0' / 'data' / 'gateway.db'}",
                                   None)
    assert done["killed"] == ROUNDS
    print(f"received {len(out.received)} certificates; retried: {dict(out.retried)}")


async def test_the_load_counts_a_503_without_retry_after_and_running_out_of_tries() -> None:
    """The load's own rule (fast, no gateway): a 503 with Retry-After is retried, one
    without it is a violation, and a client whose tries run out records that."""
    from aiohttp import web

    from .load import _post_until_answered

    answers = {"/bare": (503, {}), "/later": (503, {"Retry-After": "1"})}

    async def handler(request: web.Request) -> web.Response:
        status, headers = answers[request.path]
        return web.Response(status=status, headers=headers, text="busy")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            out = Outcomes()
            assert await _post_until_answered(session, "est", f"http://127.0.0.1:{port}/bare", b"", {}, out, 3) is None
            assert len(out.violations) == 1 and "Retry-After None" in out.violations[0], out.violations
            out = Outcomes()
            assert await _post_until_answered(session, "est", f"http://127.0.0.1:{port}/later", b"", {}, out, 2) is None
            assert out.retried["est 503"] == 2
            assert len(out.violations) == 1 and "after 2 tries" in out.violations[0], out.violations
    finally:
        await runner.cleanup()
