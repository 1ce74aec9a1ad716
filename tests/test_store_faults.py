"""PostgreSQL connections killed by ``pg_terminate_backend`` (a failover, an operator, a
pooler): a retryable answer, one transparent retry where repeating is safe, nothing
half-written, and never a final refusal of the client's request.

Each test has its own database, so terminating "every backend of the database" touches
only this test's connections. A connection is killed from a separate admin connection,
at the exact statement the test chooses (an engine event on the gateway's own engine).
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.util import await_

from conformance.acme.support import Http01Responder, RawClient, b64url, make_csr, new_config
from conformance.harness import running_gateway
from gateway import bootstrap
from gateway.errors import ErrorKind, GatewayError
from gateway.store import Store
from gateway.store.records import EventFilter

from protocols.acme.ari import CertID

from .acme.test_server import authorize, issue
from .conftest import PG_URL, _asyncpg_dsn, fresh_pg_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database("test_faults") as url:  # fails under CI=true, skips elsewhere
        yield url


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        yield conn
    finally:
        await conn.close()


async def terminate_all(admin: asyncpg.Connection, url: str) -> int:
    """``pg_terminate_backend`` every connection to the test's database but the admin's."""
    database = url.rsplit("/", 1)[1]
    return int(await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()", database))


def kill_at(store: Store, admin: asyncpg.Connection, matches: Callable[[str], bool], times: int = 1) -> list[str]:
    """Terminate the store connection about to run a statement ``matches`` accepts (``times``
    times), from the admin connection; returns the statements it cut."""
    cut: list[str] = []

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if len(cut) < times and matches(statement):
            cut.append(statement)
            pid = conn.connection.dbapi_connection._connection.get_server_pid()
            await_(admin.execute("SELECT pg_terminate_backend($1)", pid))

    for engine in set(store.sync_engines):
        event.listen(engine, "before_cursor_execute", before)
    return cut


async def issued(q: Any) -> int:
    return sum(1 for e in await q.events.list(EventFilter(type="issue")) if e.status != "failure")


async def test_a_statement_cut_mid_flight_is_store_unavailable(pg_url: str, admin: asyncpg.Connection) -> None:
    async with await Store.open(pg_url) as store:
        cut = kill_at(store, admin, lambda s: "pg_sleep" in s)
        with pytest.raises(GatewayError) as raised:
            async with store.read() as q:
                await q.connection.execute(text("SELECT pg_sleep(0.5)"))
        assert cut and raised.value.kind is ErrorKind.UNAVAILABLE, raised.value
        async with store.read() as q:  # the pool replaced the dead connection
            assert await q.cas.list() == []


async def test_reads_are_retried_once_on_a_fresh_connection(pg_url: str, admin: asyncpg.Connection) -> None:
    async with await Store.open(pg_url) as store:
        calls = []

        async def block(q: Any) -> int:
            calls.append(await q.connection.scalar(text("SELECT pg_backend_pid()")))
            return int(await q.generations.get())

        generation = await store.config_generation_now()
        cut = kill_at(store, admin, lambda s: "generation" in s.lower())
        assert await store.retrying(block) == generation
        assert len(cut) == 1 and len(calls) == 2 and calls[0] != calls[1]  # a fresh connection
        cut = kill_at(store, admin, lambda s: "generation" in s.lower(), times=2)
        with pytest.raises(GatewayError) as raised:  # once, not forever
            await store.retrying(block)
        assert raised.value.kind is ErrorKind.UNAVAILABLE and len(cut) == 2


async def test_pooled_connections_the_server_closed_are_replaced_before_use(
    pg_url: str, admin: asyncpg.Connection,
) -> None:
    """Idle pooled connections terminated by the server are not handed out: transactions
    on the store directly (which nothing retries) succeed on fresh ones."""
    async with await Store.open(pg_url) as store:
        async def hold(ready: asyncio.Event, go: asyncio.Event) -> int:
            async with store.read() as q:
                pid = int(await q.connection.scalar(text("SELECT pg_backend_pid()")))
                ready.set()
                await go.wait()
                return pid

        go = asyncio.Event()
        readies = [asyncio.Event() for _ in range(3)]
        holders = [asyncio.create_task(hold(r, go)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        go.set()
        pooled = set(await asyncio.gather(*holders))  # three connections now idle in the pool
        assert len(pooled) == 3 and await terminate_all(admin, pg_url) == 3
        database = pg_url.rsplit("/", 1)[1]
        for _ in range(100):  # pg_terminate_backend only signals; wait until they are gone
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                                        "AND pid <> pg_backend_pid()", database):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the loop reads each socket's end
        for _ in range(3):
            async with store.transaction() as q:
                pid = int(await q.connection.scalar(text("SELECT pg_backend_pid()")))
            assert pid not in pooled


async def test_an_uncommitted_transaction_is_run_again_and_written_once(pg_url: str, admin: asyncpg.Connection) -> None:
    async with await Store.open(pg_url) as store:
        async with store.transaction() as q:
            await q.connection.execute(text("CREATE TABLE fault_probe (id text PRIMARY KEY, part int)"))
        tag = uuid.uuid4().hex

        async def block(q: Any) -> None:
            await q.connection.execute(text("INSERT INTO fault_probe VALUES (:i, 1)"), {"i": tag})
            await q.connection.execute(text("INSERT INTO fault_probe VALUES (:i, 2)"), {"i": tag + "-2"})

        inserts: list[str] = []

        def second_insert(statement: str) -> bool:  # the first attempt's second INSERT
            if "INSERT INTO fault_probe" in statement:
                inserts.append(statement)
            return len(inserts) == 2

        cut = kill_at(store, admin, second_insert)

        await store.retrying(block, write=True)
        assert len(cut) == 1
        async with store.read() as q:
            rows = (await q.connection.execute(text("SELECT id, part FROM fault_probe ORDER BY part"))).all()
        assert [tuple(r) for r in rows] == [(tag, 1), (tag + "-2", 2)]  # once, both rows


async def test_terminated_connections_do_not_fail_requests(tmp_path: Path, pg_url: str,
                                                           admin: asyncpg.Connection) -> None:
    """Idle connections killed between requests: the next requests succeed (the pool's
    closed-connection check and the retried configuration-generation read); an ACME finalize whose issuing
    transaction is cut gets a retryable 503 with Retry-After, the order stays ready and
    nothing is written; finalizing again issues."""
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir, store_url=pg_url)
    async with running_gateway(data_dir) as (gw, info):
        async with Http01Responder() as web01:
            cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
            async with RawClient(info, cid) as client:
                await client.register()
                reply = await client.order("faults.example.test")
                await authorize(client, reply.json, web01)
                ready = (await client.poll(reply.location, ("ready",))).json
                assert await terminate_all(admin, pg_url) > 0
                assert (await client.post(reply.location)).json["status"] == "ready"
                async with gw.store.read() as q:
                    certificates = await q.certificates.count()
                    issued_events = await issued(q)
                der, _ = make_csr(["faults.example.test"])
                cut = kill_at(gw.store, admin, lambda s: s.lstrip().upper().startswith("INSERT INTO CERTIFICATES"))
                refused = await client.post(ready["finalize"], {"csr": b64url(der)})
                assert cut, "the issuing transaction was not reached"
                assert refused.status == 503 and refused.problem == "serverInternal", refused.json
                assert int(refused.headers["Retry-After"]) > 0
                assert (await client.post(reply.location)).json["status"] == "ready"
                async with gw.store.read() as q:  # nothing half-written
                    assert await q.certificates.count() == certificates
                    assert await issued(q) == issued_events  # (the failure itself is audited)
                done = await client.post(ready["finalize"], {"csr": b64url(der)})
                assert done.status == 200 and done.json["status"] == "valid", done.json
                # a GET that reads the store (renewal info), its connection cut: run again, 200
                _, cert, _ = await issue(client, web01, "ari.faults.example.test")
                cut = kill_at(gw.store, admin, lambda s: s.lstrip().upper().startswith("SELECT")
                              and "FROM CERTIFICATES" in s.upper())
                window = await client.get(f"{client.directory['renewalInfo']}/{CertID.of(cert)}")
                assert cut and window.status == 200 and "suggestedWindow" in window.json, window.json


async def test_scep_enrollment_cut_by_a_lost_connection_is_http_503_never_failure(
    tmp_path: Path, pg_url: str, admin: asyncpg.Connection,
) -> None:
    """RFC 8894 has no "try later" failInfo and a FAILURE CertRep is final for every
    client (certmonger drops the request); an HTTP 503 is retried. The same request
    sent again then enrolls (protocols/scep/DIVERGENCES.md "Store unavailable")."""
    import aiohttp
    from cryptography import x509

    from conformance.scep.simulator import ScepTestClient
    from conformance.scep.simulator import make_csr as scep_csr
    from conformance.scep.simulator import parse_cert_rep
    from protocols.scep import cms as scms
    from protocols.scep.types import PkiStatus

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir, store_url=pg_url)
    async with running_gateway(data_dir) as (gw, info):
        scep = next(e for e in info.data["protocols"]["scep"] if e["config"] == "scep")
        url = f"{scep['url']}/pkiclient.exe"
        async with aiohttp.ClientSession() as session:
            async with session.get(url, params={"operation": "GetCACert"}) as resp:
                certs = scms.certificates_of_degenerate(await resp.read())
            ra = next(c for c in certs if not c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
            device = ScepTestClient(ra, cn="faults-device")
            body, tid, _ = device.pkcs_req(scep_csr(device.key, "faults-device", challenge=scep["challenge"]))
            async with gw.store.read() as q:
                certificates = await q.certificates.count()
            cut = kill_at(gw.store, admin, lambda s: s.lstrip().upper().startswith("INSERT INTO CERTIFICATES"))
            post = {"params": {"operation": "PKIOperation"}, "data": body,
                    "headers": {"Content-Type": "application/x-pki-message"}}
            async with session.post(url, **post) as resp:  # type: ignore[arg-type]
                assert cut, "the issuing transaction was not reached"
                assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0, (resp.status, await resp.read())
                assert resp.content_type == "text/plain"  # no CertRep, so no FAILURE
            async with gw.store.read() as q:
                assert await q.certificates.count() == certificates  # nothing half-written
            async with session.post(url, **post) as resp:  # type: ignore[arg-type]
                rep = parse_cert_rep(await resp.read())
            assert rep.status is PkiStatus.SUCCESS and rep.transaction_id == tid, rep.fail_text
            async with gw.store.read() as q:
                assert await q.certificates.count() == certificates + 1


async def test_reads_cut_by_a_lost_connection_are_answered_on_a_fresh_one(
    tmp_path: Path, pg_url: str, admin: asyncpg.Connection,
) -> None:
    """The gateway's backend terminated in the middle of a CRL GET, an OCSP GET and an
    OCSP POST: each is run once more and answers 200 with its real content; cut twice,
    the CRL GET is a 503 with Retry-After and the OCSP request an OCSP internalError
    (once more, not forever). Writes are not run again at the edge: the ACME and SCEP
    tests here show their retryable answers."""
    import aiohttp
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    from .support import make_csr as core_csr

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir, store_url=pg_url)
    async with running_gateway(data_dir) as (gw, info):
        issued = await gw.authority.issue_direct("issuing", core_csr()[0], "device", actor="test")
        crl_number = x509.load_der_x509_crl(await gw.authority.crl("issuing", force=True)).extensions \
            .get_extension_for_class(x509.CRLNumber).value.crl_number
        request = ocsp.OCSPRequestBuilder().add_certificate(
            issued.certificate, issued.chain[0], hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)
        encoded = base64.b64encode(request).decode()
        reads_cas = (lambda s: s.lstrip().upper().startswith("SELECT") and "FROM CAS" in s.upper())
        reads_certificate = (lambda s: s.lstrip().upper().startswith("SELECT") and "FROM CERTIFICATES" in s.upper())
        async with aiohttp.ClientSession() as session:
            cut = kill_at(gw.store, admin, reads_cas)
            async with session.get(f"{info.http}/crl/issuing.crl") as resp:
                assert resp.status == 200, await resp.text()
                got = x509.load_der_x509_crl(await resp.read())
            assert cut and got.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == crl_number
            for method in ("GET", "POST"):
                cut = kill_at(gw.store, admin, reads_certificate)
                if method == "GET":
                    answer = session.get(f"{info.http}/ocsp/issuing/{encoded}")
                else:
                    answer = session.post(f"{info.http}/ocsp/issuing", data=request,
                                          headers={"Content-Type": "application/ocsp-request"})
                async with answer as resp:
                    assert resp.status == 200
                    parsed = ocsp.load_der_ocsp_response(await resp.read())
                assert cut, method
                assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL, (method, parsed.response_status)
                assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
                assert parsed.serial_number == issued.serial
            cut = kill_at(gw.store, admin, reads_cas, times=2)
            async with session.get(f"{info.http}/crl/issuing.crl") as resp:
                assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0, resp.status
            assert len(cut) == 2
            cut = kill_at(gw.store, admin, reads_certificate, times=2)
            async with session.get(f"{info.http}/ocsp/issuing/{encoded}") as resp:
                assert resp.status == 200
                status = ocsp.load_der_ocsp_response(await resp.read()).response_status
            assert len(cut) == 2 and status is ocsp.OCSPResponseStatus.INTERNAL_ERROR


async def _health(http: str) -> tuple[int, dict[str, Any]]:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"{http}/healthz") as resp:
                return resp.status, await resp.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return 0, {}


async def _until(http: str, status: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() < deadline:
        last = await _health(http)
        if last[0] == status:
            return last[1]
        await asyncio.sleep(0.3)
    raise AssertionError(f"/healthz never answered {status}; last {last}")


async def test_the_gateway_starts_while_postgresql_is_down_and_is_ready_when_it_is_back(
        tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL behind a loopback proxy that the test takes away: ``gateway serve``
    started without its database answers /healthz 503 not-ready (it does not exit) on
    both listeners (HTTPS too, with Retry-After), is ready once the database is back, not
    ready while it is away again, ready after."""
    from urllib.parse import urlsplit

    from conformance.harness import ROOT, free_port, gateway_command
    from conformance.tcp_proxy import TcpProxy

    target = urlsplit(pg_url.replace("postgresql+asyncpg", "postgresql", 1))
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    proxied = pg_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}", 1)
    data_dir = tmp_path / "data"
    https_port, http_port = free_port(), free_port()
    await bootstrap.initialize(data_dir, store_url=proxied)
    await proxy.stop()  # the database host goes down before the gateway starts
    log_path = tmp_path / "serve.log"
    http = f"http://127.0.0.1:{http_port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            gateway_command("serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                            "--https-port", str(https_port), "--http-port", str(http_port)),
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        body = await _until(http, 503)
        assert body == {"status": "not-ready", "reason": "the store is unreachable"}
        import ssl

        import aiohttp

        tls = ssl.create_default_context(cafile=str(data_dir / "cas" / f"{bootstrap.ROOT_CA}.pem"))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for path in ("/healthz", "/acme/acme/directory"):
                async with session.get(f"https://127.0.0.1:{https_port}{path}", ssl=tls) as resp:
                    assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0, path
                    assert await resp.json() == body
        await asyncio.sleep(2)
        assert proc.poll() is None, log_path.read_text()  # waiting, not exited
        await proxy.start()  # the database is back
        assert (await _until(http, 200))["status"] == "ok"
        await proxy.stop()  # away again while serving
        assert (await _until(http, 503)) == body
        await proxy.start()
        assert (await _until(http, 200))["status"] == "ok"
    finally:
        proc.terminate()
        for _ in range(300):  # waited for here, not in proc.wait(): the proxy runs on this loop
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            proc.kill()
        code = proc.wait()
        await proxy.stop()
    text_log = log_path.read_text()
    assert code == 0, text_log
    assert "store unreachable" in text_log and "Traceback" not in text_log, text_log


async def test_a_locked_sqlite_database_is_a_retryable_503_never_the_drivers_message(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock past the busy timeout (a backup, a
    stuck CLI): the client gets 503 with Retry-After and no trace of "database is
    locked"; once the lock is gone the same request succeeds."""
    import base64
    import sqlite3
    import threading

    import aiohttp
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes as h
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (cx509.CertificateSigningRequestBuilder()
           .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "locked.example.test")]))
           .sign(key, h.SHA256()))
    from cryptography.hazmat.primitives import serialization as ser

    body = base64.b64encode(csr.public_bytes(ser.Encoding.DER))
    async with running_gateway(data_dir) as (_gw, info):
        est = next(e for e in info.data["protocols"]["est"] if e["config"] == "est")
        basic = "Basic " + base64.b64encode(f"{est['username']}:{est['password']}".encode()).decode()
        holding, release = threading.Event(), threading.Event()

        def hold_the_write_lock() -> None:
            conn = sqlite3.connect(data_dir / "gateway.db", isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            holding.set()
            release.wait(60)
            conn.execute("ROLLBACK")
            conn.close()

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        try:
            assert holding.wait(10)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                async with session.post(f"{est['url']}/simpleenroll", data=body, ssl=info.ssl_context(),
                                        headers={"Content-Type": "application/pkcs10", "Authorization": basic}) as resp:
                    text_body = await resp.text()
                    assert resp.status == 503, (resp.status, text_body)
                    assert int(resp.headers["Retry-After"]) > 0
                    assert "locked" not in text_body.lower()
                release.set()
                holder.join(10)
                async with session.post(f"{est['url']}/simpleenroll", data=body, ssl=info.ssl_context(),
                                        headers={"Content-Type": "application/pkcs10", "Authorization": basic}) as resp:
                    assert resp.status == 200, await resp.text()
        finally:
            release.set()
            holder.join(10)
