"""Notifications to real receivers on 127.0.0.1: a webhook (aiohttp over TLS) that checks
the HMAC signature, and aiosmtpd as an SMTP server that requires STARTTLS. curl EST
enrollments and an operator's revocation become signed webhook calls; a request held for
approval becomes an e-mail from the template; a certificate near expiry is announced once;
handlers whose conditions do not match stay silent."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509

from conformance.harness import free_port, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.notifications import Notifier
from gateway.store.records import serial_hex

from .clients import allow_inserts, curl_est_enroll, est_label, refuse_inserts
from .tls import server_context

SECRET = "webhook-signing-secret-1"


@dataclass
class Webhook:
    """Checks the signature; ``fail_first`` calls are answered 503."""

    workdir: Path
    fail_first: int = 0
    port: int = field(default_factory=free_port)
    calls: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        parts = dict(p.split("=", 1) for p in request.headers["X-Gateway-Signature"].split(","))
        expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["v1"]) or abs(time.time() - int(parts["t"])) > 300:
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            self.refused += 1
            return web.Response(status=503, text="try later")
        self.calls.append({"key": request.headers["Idempotency-Key"], **json.loads(body)})
        return web.json_response({})

    async def start(self) -> "Webhook":
        context = server_context(self.workdir, "hook")
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Mailbox:
    """aiosmtpd on 127.0.0.1 that refuses mail before STARTTLS."""

    def __init__(self, workdir: Path) -> None:
        from aiosmtpd.controller import Controller

        context = server_context(workdir, "smtp")
        self.tls_ca = workdir / "smtp.pem"
        self.messages: list[Any] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append((bool(session.ssl), envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


async def _pass(gw: Any) -> None:
    """What the background tasks do every [ca] outbox_interval, once, here."""
    while await Notifier(gw.store).run_once():
        pass
    await gw.deliverer.run_once()


async def test_webhook_and_email_notifications(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    hook = await Webhook(tmp_path / "hook").start()
    mailbox = Mailbox(tmp_path / "smtp")
    mailbox.controller.start()
    try:
        async with running_gateway(data_dir) as (gw, info):
            label, password = est_label(info, "issuing", "watched")
            held_label, held_password = est_label(info, "issuing", "held")
            run_cli("est", "set", "held", "--approval", "manual", data_dir=data_dir)
            quiet_label, quiet_password = est_label(info, "issuing", "quiet")
            run_cli("notify", "add", "pki-hook", "--event", "issued", "--event", "revoked", "--config", label,
                    "--webhook", hook.url, "--secret-env", "HOOK_SECRET", "--trust", str(hook.workdir / "hook.pem"),
                    data_dir=data_dir, env={"HOOK_SECRET": SECRET})
            run_cli("notify", "add", "approvers", "--event", "pending", "--config", "held",
                    "--email-to", "pki-approvers@example.test", "--from", "gateway@example.test",
                    "--smtp-host", "127.0.0.1", "--smtp-port", str(mailbox.port), "--trust", str(mailbox.tls_ca),
                    "--subject", "Approve ${protocol_config} request ${request}", data_dir=data_dir)
            listed = run_cli("notify", "list", "--json", data_dir=data_dir).stdout
            assert SECRET not in listed and "v1." not in listed

            cert = await curl_est_enroll(info, label, password, tmp_path / "a", "a.example.test")
            await curl_est_enroll(info, quiet_label, quiet_password, tmp_path / "q", "q.example.test")
            await _pass(gw)
            [issued] = hook.calls
            assert issued["event"] == "issued" and issued["serial"] == serial_hex(cert.serial_number)
            assert issued["subject"] == "CN=a.example.test" and issued["protocol_config"] == label

            await gw.authority.revoke(serial_hex(cert.serial_number), RevocationReason.key_compromise, actor="test")
            await _pass(gw)
            assert [c["event"] for c in hook.calls] == ["issued", "revoked"]
            assert len({c["key"] for c in hook.calls}) == 2
            await _pass(gw)
            assert len(hook.calls) == 2  # nothing twice

            from .clients import sh

            env = {"EST": f"{info.https}/.well-known/est/held", "CA": info.tls_ca}
            made = await sh('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout h.key '
                            '-subj "/CN=held.example.test" -outform DER | openssl base64 -out h.b64 && '
                            f'curl -sS --cacert "$CA" -u "device:{held_password}" '
                            '-H "Content-Type: application/pkcs10" --data-binary @h.b64 -o /dev/null '
                            '-w "%{http_code}" "$EST/simpleenroll"', tmp_path, env)
            assert made.stdout == "202", made.stdout + made.stderr
            await _pass(gw)
            [(tls, rcpts, mail)] = mailbox.messages
            assert tls and rcpts == ["pki-approvers@example.test"]
            assert mail["Subject"].startswith("Approve held request ") and len(mail["Subject"]) > 25
            assert "pending on held" in mail.get_payload()

            # a certificate inside the window is announced once, however often the scan runs
            run_cli("notify", "add", "expiry", "--event", "expiring", "--expiring-days", "3650", "--config", quiet_label,
                    "--webhook", hook.url, "--secret-env", "HOOK_SECRET", "--trust", str(hook.workdir / "hook.pem"),
                    data_dir=data_dir, env={"HOOK_SECRET": SECRET})
            notifier = Notifier(gw.store)
            assert await notifier.expiring() == 1
            assert await notifier.expiring() == 0
            await gw.deliverer.run_once()
            assert [c["event"] for c in hook.calls] == ["issued", "revoked", "expiring"]
            assert hook.calls[-1]["subject"] == "CN=q.example.test"
    finally:
        mailbox.controller.stop()
        await hook.stop()


async def _held(info: Any, label: str, password: str, work: Path, name: str, expect: str = "202") -> str:
    """curl EST /simpleenroll on a manual-approval label: 202, held (``expect=""``: any answer)."""
    from .clients import sh

    work.mkdir(parents=True, exist_ok=True)
    env = {"EST": f"{info.https}/.well-known/est/{label}", "CA": info.tls_ca}
    made = await sh('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout h.key '
                    f'-subj "/CN={name}" -outform DER | openssl base64 -out h.b64 && '
                    f'curl -sS --cacert "$CA" -u "device:{password}" '
                    '-H "Content-Type: application/pkcs10" --data-binary @h.b64 -o /dev/null '
                    '-w "%{http_code}" "$EST/simpleenroll"', work, env)
    assert made.stdout == expect or not expect, made.stdout + made.stderr
    return made.stdout


async def test_approved_and_rejected_requests_and_conditions_on_ca_profile_status(tmp_path: Path) -> None:
    """An operator's approval announces ``issued`` and a rejection ``rejected``; --ca,
    --profile and --status select (the profile of a held request comes from the request);
    a custom --body is the message."""
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    hook = await Webhook(tmp_path / "hook").start()
    try:
        async with running_gateway(data_dir) as (gw, info):
            label, password = est_label(info, "issuing", "held")
            run_cli("est", "set", label, "--approval", "manual", data_dir=data_dir)
            await _held(info, label, password, tmp_path / "one", "one.example.test")
            async with gw.store.read() as q:
                [held] = await q.requests.list(status="pending")
            profile = held.profile

            def add(name: str, *args: str) -> None:
                run_cli("notify", "add", name, *args, "--webhook", hook.url, "--secret-env", "HOOK_SECRET",
                        "--trust", str(hook.workdir / "hook.pem"), data_dir=data_dir, env={"HOOK_SECRET": SECRET})

            add("decided", "--event", "issued", "--event", "rejected", "--ca", "issuing", "--profile", profile,
                "--body", "${event} ${serial} for ${subject} by ${handler} (${profile})")
            add("other-ca", "--event", "issued", "--event", "rejected", "--event", "pending", "--ca", "root")
            add("other-profile", "--event", "pending", "--event", "rejected", "--profile", "no-such-profile")
            add("waiting", "--event", "pending", "--status", "pending", "--profile", profile)
            add("no-status", "--event", "pending", "--status", "success")

            await _held(info, label, password, tmp_path / "two", "two.example.test")
            await _held(info, label, password, tmp_path / "three", "three.example.test")
            await _pass(gw)
            # "one" was held before the handlers existed: only two and three are announced
            assert sorted((c["handler"], c["event"], c["subject"]) for c in hook.calls) == [
                ("waiting", "pending", "CN=three.example.test"), ("waiting", "pending", "CN=two.example.test")]
            assert {c["profile"] for c in hook.calls} == {profile}
            async with gw.store.read() as q:  # by subject: the list's order is not the order held
                held_now = {x509.load_pem_x509_csr(r.csr_pem.encode()).subject.rfc4514_string(): r
                            for r in await q.requests.list(status="pending")}
            two, three = held_now["CN=two.example.test"], held_now["CN=three.example.test"]
            hook.calls.clear()

            cert = await gw.authority.approve(two.id, "operator-1")
            await gw.authority.reject(three.id, "operator-1", "not one of ours")
            await _pass(gw)
            calls = sorted(hook.calls, key=lambda c: c["event"])
            assert [(c["handler"], c["event"]) for c in calls] == [("decided", "issued"), ("decided", "rejected")]
            issued, rejected = calls
            serial = serial_hex(cert.serial)
            assert issued["serial"] == serial and issued["request"] == two.id
            assert issued["message"] == f"issued {serial} for CN=two.example.test by decided ({profile})"
            assert rejected["request"] == three.id and rejected["reason"] == ", reason not one of ours"
            assert rejected["message"] == f"rejected  for CN=three.example.test by decided ({profile})"
            await _pass(gw)
            assert len(hook.calls) == 2  # nothing twice
    finally:
        await hook.stop()


async def test_an_event_that_commits_after_a_later_one_is_still_announced_on_postgresql() -> None:
    """PostgreSQL takes an event's id at insert and commits transactions in any order:
    id n+1 can be visible before id n. The cursor waits at the missing id (its events
    read again, each notification written once), and passes a rolled-back id only
    ``gap_wait`` after the event that followed it."""
    import asyncio
    import datetime as dt
    import uuid

    import pytest

    from gateway.clock import FakeClock
    from gateway.notifications import CURSOR
    from gateway.store import Store
    from gateway.store.records import EventRecord, NotificationHandlerRecord
    from tests.conftest import PG_URL, _pg_admin, _require_postgres

    await _require_postgres()  # fails under CI=true, skips elsewhere
    schema = f"test_{uuid.uuid4().hex[:16]}"
    store = await Store.open(PG_URL, schema=schema)
    clock = FakeClock()
    try:
        async with store.transaction() as q:
            await q.notifications.insert(NotificationHandlerRecord(
                id="h1", name="revocations", events=["revoked"], conditions={}, action="webhook", settings={},
                created_at=clock() - dt.timedelta(minutes=1)))

        def revoked(serial: str) -> EventRecord:
            return EventRecord(type="revoke", status="success", serial=serial, ca_id="issuing")

        notifier = Notifier(store, clock=clock, gap_wait=dt.timedelta(seconds=60))
        taken, release = asyncio.Event(), asyncio.Event()
        ids: dict[str, int] = {}

        async def slow() -> None:
            async with store.transaction() as q:
                ids["slow"] = await q.events.add(revoked("a1"))
                taken.set()
                await release.wait()  # commits after the next one

        held = asyncio.create_task(slow())
        await taken.wait()
        async with store.transaction() as q:
            ids["fast"] = await q.events.add(revoked("b2"))
        assert ids["fast"] > ids["slow"]
        assert await notifier.run_once() == 1  # b2's; a1 is not visible yet
        release.set()
        await held
        assert await notifier.run_once() == 1  # a1's, once the lower id committed
        assert await notifier.run_once() == 0  # b2 read again, not written again
        async with store.read() as q:
            rows = await q.outbox.list()
            assert sorted(r.serial or "" for r in rows) == ["a1", "b2"]
            assert await q.generations.get(CURSOR) == ids["fast"]

        with pytest.raises(RuntimeError):  # an id taken and rolled back stays missing for good
            async with store.transaction() as q:
                await q.events.add(revoked("c3"))
                raise RuntimeError("rolled back")
        async with store.transaction() as q:
            last = await q.events.add(EventRecord(type="revoke", status="success", serial="d4", ca_id="issuing",
                                                  created_at=clock()))
        assert await notifier.run_once() == 1
        async with store.read() as q:
            assert await q.generations.get(CURSOR) == ids["fast"]  # waits at the missing id ...
        clock.advance(61)
        assert await notifier.run_once() == 0
        async with store.read() as q:
            assert await q.generations.get(CURSOR) == last  # ... until it cannot be in flight any more
            assert len(await q.outbox.list()) == 3
    finally:
        await store.close()
        await _pg_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_the_expiring_scan_reads_every_page_soonest_first(tmp_path: Path) -> None:
    """Five certificates inside the window, pages of two: all five announced once (the scan
    used to stop at its first page), in order of expiry."""
    import datetime as dt

    from gateway.store.records import CertificateFilter

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    async with running_gateway(data_dir) as (gw, info):
        label, password = est_label(info, "issuing", "fleet")
        serials = [serial_hex((await curl_est_enroll(info, label, password, tmp_path / str(i),
                                                     f"d{i}.example.test")).serial_number) for i in range(5)]
        run_cli("notify", "add", "expiry", "--event", "expiring", "--expiring-days", "3650", "--config", label,
                "--webhook", "https://127.0.0.1:9/hook", "--secret-env", "HOOK_SECRET",
                data_dir=data_dir, env={"HOOK_SECRET": SECRET})
        notifier = Notifier(gw.store, page=2)
        assert await notifier.expiring() == 5
        assert await notifier.expiring() == 0
        async with gw.store.read() as q:
            rows = await q.outbox.list("pending")
            assert sorted(r.serial or "" for r in rows) == sorted(serials)
            flt = CertificateFilter(protocol_config=label, expires_before=dt.datetime.now(dt.timezone.utc)
                                    + dt.timedelta(days=3650))
            first = await q.certificates.expiring_page(flt, None, 2)
            rest = await q.certificates.expiring_page(flt, (first[-1].not_after, first[-1].serial), 10)
        paged = first + rest
        assert [(c.not_after, c.serial) for c in paged] == sorted((c.not_after, c.serial) for c in paged)
        assert len(paged) == 5 and {c.serial for c in paged} == set(serials)


async def test_a_held_request_and_its_pending_event_commit_together(tmp_path: Path) -> None:
    """A storage fault on the ``pending`` event (a SQLite trigger refuses it) holds no
    request: a request stored without its event would never reach the approvers."""
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    async with running_gateway(data_dir) as (gw, info):
        label, password = est_label(info, "issuing", "held")
        run_cli("est", "set", label, "--approval", "manual", data_dir=data_dir)
        await refuse_inserts(gw, "events", "NEW.status = 'pending'")
        assert await _held(info, label, password, tmp_path / "one", "one.example.test", expect="") != "202"
        async with gw.store.read() as q:
            assert not await q.requests.list()
        await allow_inserts(gw)
        await _held(info, label, password, tmp_path / "two", "two.example.test")
        from gateway.store.records import EventFilter

        async with gw.store.read() as q:
            [held] = await q.requests.list(status="pending")
            [event] = await q.events.list(EventFilter(status="pending", protocol_config=label))
        assert event.request_id == held.id
