"""Certificate distribution to HTTPS receivers (aiohttp servers on 127.0.0.1 that check
TLS client certificates or Basic): every certificate curl EST gets is POSTed once with its
chain, revocations follow, failures are retried with backoff and shown in the outbox, and
a gateway killed with SIGKILL between issuance and delivery delivers after its restart,
once per outbox id at the receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, GatewayProcess, free_port, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.config import load_config
from gateway.store.records import serial_hex

from .clients import allow_inserts, curl_est_enroll, est_label, refuse_inserts
from .tls import server_context


@dataclass
class Receiver:
    """What the destination got; ``fail_first`` requests are answered 503."""

    workdir: Path
    client_ca: Path | None = None  # require a TLS client certificate chaining to this
    basic: tuple[str, str] | None = None
    fail_first: int = 0
    on_receipt: Callable[[], None] | None = None  # called once a POST is taken, before the answer
    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)  # by Idempotency-Key: what a receiver holds
    refused: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/certificates"

    @property
    def tls_ca(self) -> Path:
        return self.workdir / "receiver.pem"

    async def _handle(self, request: web.Request) -> web.Response:
        if self.basic is not None:
            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if request.headers.get("Authorization") != want:
                return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            self.refused += 1
            return web.Response(status=503, text="try later")
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        got = {"key": request.headers.get("Idempotency-Key"), "event": request.headers.get("X-Gateway-Event"),
               "body": await request.json(), "peer": peer}
        self.received.append(got)
        self.kept.setdefault(str(got["key"]), got["body"])  # a resend with the same key changes nothing
        if self.on_receipt is not None:
            self.on_receipt()
        return web.json_response({"ok": True})

    async def start(self) -> "Receiver":
        context = server_context(self.workdir, "receiver", self.client_ca)
        app = web.Application()
        app.router.add_post("/certificates", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} deliveries arrived"
            await asyncio.sleep(0.2)


def _client_certificate(data_dir: Path, tmp: Path) -> tuple[Path, Path]:
    """A tls-client certificate from the gateway's own CA, as the gateway's identity at the receiver."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway-distribution")]))
           .sign(key, hashes.SHA256()))
    (tmp / "dist.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    cert = run_cli("cert", "issue", "--csr", str(tmp / "dist.csr"), "--profile", "tls-client", "--chain",
                   data_dir=data_dir).stdout
    (tmp / "dist.pem").write_text(cert)
    (tmp / "dist.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return tmp / "dist.pem", tmp / "dist.key"


async def _outbox(info_dir: Path, status: str | None = None) -> list[dict[str, Any]]:
    args = ["outbox", "list", "--json", *(("--status", status) if status else ())]
    return list(json.loads(run_cli(*args, data_dir=info_dir).stdout))


async def test_certificates_and_revocations_reach_a_client_certificate_receiver(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    cert_path, key_path = _client_certificate(data_dir, tmp_path)
    receiver = await Receiver(tmp_path / "rx", client_ca=data_dir / "cas" / "root.pem", fail_first=1).start()
    try:
        async with running_gateway(data_dir) as (gw, info):
            label, password = est_label(info, "issuing", "shipped")
            added = run_cli("distribution", "add", label, receiver.url, "--client-cert", str(cert_path),
                            "--client-key", str(key_path), "--trust", str(receiver.tls_ca), "--chain",
                            "--revocations", "--json", data_dir=data_dir)
            dest = json.loads(added.stdout)[0]
            assert dest["auth"] == "certificate" and "BEGIN" not in added.stdout
            unrelated_label, unrelated_password = est_label(info, "issuing", "kept-here")

            cert = await curl_est_enroll(info, label, password, tmp_path / "a", "a.example.test")
            await curl_est_enroll(info, unrelated_label, unrelated_password, tmp_path / "b", "b.example.test")
            assert await gw.deliverer.run_once() == 0  # the receiver answers 503 the first time ...
            [pending] = await _outbox(data_dir, "pending")
            assert pending["attempts"] == 1 and "HTTP 503" in pending["last_error"]
            assert receiver.refused == 1 and not receiver.received
            async with gw.store.transaction() as q:  # ... and the backoff (5 s) is not waited for here
                await q.outbox.update(pending["id"], next_attempt_at=pending_now())
            assert await gw.deliverer.run_once() == 1
            assert await gw.deliverer.run_once() == 0  # nothing twice

            [got] = receiver.received
            assert got["key"] == pending["id"] and got["event"] == "issued"
            assert got["peer"]["subject"] == ((("commonName", "gateway-distribution"),),)
            body = got["body"]
            assert body["serial"] == serial_hex(cert.serial_number) and body["protocol_config"] == label
            assert x509.load_pem_x509_certificate(body["certificate"].encode()) == cert
            issuing = x509.load_pem_x509_certificate(body["chain"][0].encode())
            cert.verify_directly_issued_by(issuing)

            await gw.authority.revoke(serial_hex(cert.serial_number), RevocationReason.superseded, actor="test")
            assert await gw.deliverer.run_once() == 1
            revoked = receiver.received[-1]
            assert revoked["event"] == "revoked" and revoked["body"]["reason"] == 4
            assert revoked["body"]["serial"] == serial_hex(cert.serial_number)
            assert len(receiver.received) == 2  # the other label's certificate went nowhere
            delivered = await _outbox(data_dir, "delivered")
            assert {e["event"] for e in delivered} == {"issued", "revoked"}

            async with aiohttp.ClientSession() as session:
                async with session.get(f"{info.https}/admin/outbox?status=delivered", ssl=info.ssl_context(),
                                       headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
                    assert resp.status == 200
                    assert len((await resp.json())["items"]) == 2
    finally:
        await receiver.stop()


def pending_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)


def _set_interval(data_dir: Path, seconds: float) -> None:
    cfg = load_config(data_dir)
    cfg.ca.outbox_interval = seconds
    cfg.save()


async def test_a_gateway_killed_before_delivery_delivers_after_restart_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    receiver = await Receiver(tmp_path / "rx", basic=("gateway", "rx-password-1")).start()
    try:
        run_cli("est", "create", "devices", "--auth", "basic", data_dir=data_dir)
        run_cli("est", "user", "add", "devices", "device", "--password-stdin", data_dir=data_dir, input=b"dev-pass-1\n")
        run_cli("distribution", "add", "devices", receiver.url, "--user", "gateway", "--password-stdin",
                "--trust", str(receiver.tls_ca), data_dir=data_dir, input=b"rx-password-1\n")
        _set_interval(data_dir, 3600)  # the first process never gets round to delivering
        first = GatewayProcess(data_dir)
        info: GatewayInfo = first.start()
        try:
            cert = await curl_est_enroll(info, "devices", "dev-pass-1", tmp_path / "a", "a.example.test")
            [pending] = await _outbox(data_dir, "pending")
            assert pending["serial"] == serial_hex(cert.serial_number)
        finally:
            assert first.proc is not None
            first.proc.kill()  # SIGKILL: no shutdown, nothing flushed
            first.proc.wait()
            first.proc = None
        assert not receiver.received

        _set_interval(data_dir, 0.5)
        second = GatewayProcess(data_dir, https_port=first.https_port, http_port=first.http_port)
        with second:
            await receiver.wait(1)
            await asyncio.sleep(2)  # several more delivery passes
        assert len(receiver.received) == 1
        got = receiver.received[0]
        assert got["key"] == pending["id"] and got["body"]["serial"] == serial_hex(cert.serial_number)
        [done] = await _outbox(data_dir, "delivered")
        assert done["id"] == pending["id"] and done["attempts"] == 1
        assert "rx-password-1" not in (second.log_path.read_text() + first.log_path.read_text())
    finally:
        await receiver.stop()


async def test_failed_deliveries_follow_the_backoff_schedule_then_fail(tmp_path: Path) -> None:
    """A certificate's delivery and its webhook notification, both refused (503): each
    retried on the backoff schedule (not before it is due: the gateway's clock is moved,
    not waited for), delivered once the receivers answer; refused for good, ``failed``
    after MAX_ATTEMPTS and not tried again. The admin API lists them by state."""
    import datetime as dt

    from gateway.clock import FakeClock
    from gateway.distribution import MAX_ATTEMPTS, Deliverer
    from gateway.notifications import Notifier

    from .test_notifications import SECRET, Webhook

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    receiver = await Receiver(tmp_path / "rx", fail_first=2).start()
    hook = await Webhook(tmp_path / "hook", fail_first=2).start()
    try:
        async with running_gateway(data_dir) as (gw, info):
            label, password = est_label(info, "issuing", "retried")
            run_cli("distribution", "add", label, receiver.url, "--trust", str(receiver.tls_ca), data_dir=data_dir)
            run_cli("notify", "add", "hook", "--event", "issued", "--config", label, "--webhook", hook.url,
                    "--secret-env", "HOOK_SECRET", "--trust", str(hook.workdir / "hook.pem"),
                    data_dir=data_dir, env={"HOOK_SECRET": SECRET})
            clock = FakeClock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=2))
            deliverer = Deliverer(gw.store, gw.cas.sealer("distribution"), clock=clock)

            async def admin(status: str) -> list[dict[str, Any]]:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"{info.https}/admin/outbox?status={status}", ssl=info.ssl_context(),
                                           headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
                        assert resp.status == 200
                        return list((await resp.json())["items"])

            async def enroll(name: str) -> list[str]:
                await curl_est_enroll(info, label, password, tmp_path / name, f"{name}.example.test")
                assert await Notifier(gw.store).run_once() == 1
                clock.advance(2)  # the rows were written on the system's clock
                return sorted(e["id"] for e in await _outbox(data_dir, "pending"))

            async def rows(ids: list[str]) -> list[Any]:
                async with gw.store.read() as q:
                    return [await q.outbox.get(i) for i in ids]

            async def attempt(ids: list[str], number: int, wait: int | None) -> None:
                """Attempt ``number`` happens now and is refused; the next is due ``wait`` s later."""
                refused = receiver.refused + hook.refused
                assert await deliverer.run_once() == 0
                assert receiver.refused + hook.refused == refused + 2
                for row in await rows(ids):
                    assert row.attempts == number
                    if wait is None:
                        assert row.status == "failed" and "HTTP 503" in row.last_error
                    else:
                        assert row.status == "pending" and row.next_attempt_at == clock() + dt.timedelta(seconds=wait)

            ids = await enroll("late")
            await attempt(ids, 1, 5)
            assert {e["id"] for e in await admin("pending")} == set(ids)
            clock.advance(4)
            assert await deliverer.run_once() == 0 and receiver.refused + hook.refused == 2  # not due yet
            clock.advance(1)
            await attempt(ids, 2, 10)
            clock.advance(9)
            assert await deliverer.run_once() == 0 and receiver.refused + hook.refused == 4
            clock.advance(1)
            assert await deliverer.run_once() == 2  # the third attempt: both delivered
            assert len(receiver.received) == 1 and len(hook.calls) == 1
            assert not await admin("pending") and not await admin("failed")

            receiver.fail_first = hook.fail_first = 1000
            ids = await enroll("never")
            schedule = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
            assert len(schedule) == MAX_ATTEMPTS - 1
            for number, wait in enumerate([*schedule, None], start=1):
                await attempt(ids, number, wait)
                if wait is not None:
                    clock.advance(wait - 1)
                    assert await deliverer.run_once() == 0
                    clock.advance(1)
            clock.advance(dt.timedelta(days=1))
            refused = receiver.refused + hook.refused
            assert await deliverer.run_once() == 0 and receiver.refused + hook.refused == refused  # failed stays
            assert {e["id"] for e in await admin("failed")} == set(ids)
            assert not await admin("pending")
            assert len(receiver.received) == 1 and len(hook.calls) == 1
    finally:
        await hook.stop()
        await receiver.stop()


async def test_a_gateway_killed_after_the_receiver_took_it_sends_it_again_with_the_same_key(tmp_path: Path) -> None:
    """The hard case: the receiver stores the POST, then the gateway dies (SIGKILL) before
    it marks the row delivered. After restart it sends again, with the same
    Idempotency-Key (derived from destination, CA and serial, not drawn per attempt), and
    the receiver that keeps one body per key holds the certificate once."""
    import datetime as dt
    import os
    import signal

    from gateway.distribution import outbox_id
    from gateway.store import Store

    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    receiver = await Receiver(tmp_path / "rx").start()
    first = GatewayProcess(data_dir)

    def die() -> None:
        if first.proc is not None and len(receiver.received) == 1:
            os.kill(first.proc.pid, signal.SIGKILL)  # the answer never reaches the gateway

    receiver.on_receipt = die
    try:
        run_cli("est", "create", "devices", "--auth", "basic", data_dir=data_dir)
        run_cli("est", "user", "add", "devices", "device", "--password-stdin", data_dir=data_dir, input=b"dev-pass-1\n")
        added = run_cli("distribution", "add", "devices", receiver.url, "--trust", str(receiver.tls_ca), "--json",
                        data_dir=data_dir)
        dest_id = json.loads(added.stdout)[0]["id"]
        _set_interval(data_dir, 0.5)
        info: GatewayInfo = first.start()
        try:
            cert = await curl_est_enroll(info, "devices", "dev-pass-1", tmp_path / "a", "a.example.test")
            await receiver.wait(1)
            assert first.proc is not None
            assert first.proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if first.proc is not None and first.proc.poll() is None:
                first.proc.kill()
                first.proc.wait()
            first.proc = None
        [pending] = await _outbox(data_dir, "pending")  # the receiver has it; the gateway does not know
        serial = serial_hex(cert.serial_number)
        ca = receiver.received[0]["body"]["ca"]
        assert pending["id"] == receiver.received[0]["key"] == outbox_id(dest_id, "issued", ca, serial)
        # the dead process's lease on the row (60 s) lapses: not waited for here
        store = await Store.open(load_config(data_dir).store_url)
        try:
            async with store.transaction() as q:
                await q.outbox.update(pending["id"], lease_until=dt.datetime.now(dt.timezone.utc)
                                      - dt.timedelta(seconds=1))
        finally:
            await store.close()

        second = GatewayProcess(data_dir, https_port=first.https_port, http_port=first.http_port)
        with second:
            await receiver.wait(2)
            await asyncio.sleep(2)  # several more delivery passes
        assert [r["key"] for r in receiver.received] == [pending["id"]] * 2  # sent twice, at least once ...
        assert list(receiver.kept) == [pending["id"]]  # ... held once
        assert receiver.kept[pending["id"]]["serial"] == serial
        [done] = await _outbox(data_dir, "delivered")
        assert done["id"] == pending["id"]
    finally:
        await receiver.stop()


async def test_the_outbox_row_commits_with_the_certificate_or_neither_does(tmp_path: Path) -> None:
    """A storage fault on the outbox insert (a SQLite trigger that refuses it) fails the
    enrollment and stores no certificate: the row is written in the issuance transaction,
    not after its commit (then the certificate would be stored with no delivery owed)."""
    from gateway.store.records import CertificateFilter, EventFilter

    from .clients import sh

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    receiver = await Receiver(tmp_path / "rx").start()
    try:
        async with running_gateway(data_dir) as (gw, info):
            label, password = est_label(info, "issuing", "atomic")
            run_cli("distribution", "add", label, receiver.url, "--trust", str(receiver.tls_ca), data_dir=data_dir)
            await refuse_inserts(gw, "outbox")
            env = {"EST": f"{info.https}/.well-known/est/{label}", "CA": info.tls_ca}
            made = await sh('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout f.key '
                            '-subj "/CN=f.example.test" -outform DER | openssl base64 -out f.b64 && '
                            f'curl -sS --cacert "$CA" -u "device:{password}" '
                            '-H "Content-Type: application/pkcs10" --data-binary @f.b64 -o /dev/null '
                            '-w "%{http_code}" "$EST/simpleenroll"', tmp_path, env)
            assert made.stdout not in ("200", "202"), made.stdout
            async with gw.store.read() as q:
                assert await q.certificates.count(CertificateFilter(protocol_config=label)) == 0
                assert not await q.outbox.list()
                assert not await q.events.list(EventFilter(protocol_config=label, status="success", type="issue"))
            await allow_inserts(gw)

            cert = await curl_est_enroll(info, label, password, tmp_path / "b", "b.example.test")
            async with gw.store.read() as q:
                [row] = await q.outbox.list()
                assert row.serial == serial_hex(cert.serial_number)
                assert await q.certificates.count(CertificateFilter(protocol_config=label)) == 1
    finally:
        await receiver.stop()
