"""Notifications: tell people and systems when an enrollment needs them or changed.

A handler names the events it wants (``issued``, ``pending`` approval, ``rejected``,
``revoked``, ``expiring`` within N days), conditions (protocol configuration, CA, profile,
event status), an action (a webhook with an HMAC-signed JSON body, or an e-mail over SMTP
with STARTTLS) and optional templates (``string.Template``: ``${event}``, ``${serial}``,
``${subject}``, ``${protocol_config}``, ``${ca}``, ``${profile}``, ``${not_after}``,
``${status}``, ``${reason}``, ``${request}``, ``${handler}``).

At least once, through the distribution outbox: the :class:`Notifier` reads the audit
trail past a cursor (a compare-and-set counter), writes one outbox row per matching
handler and event and advances the cursor in the same transaction; the outbox worker
delivers with the same retries and backoff as certificate distribution. The row id is
derived from (handler, event id), so the outbox's primary key keeps each notification
once however often its event is read. That is what makes the cursor safe on PostgreSQL,
where event ids are taken at insert but transactions commit in any order: the cursor
never passes an id still missing (a transaction that took it may yet commit), so the
events after it are read again each pass until it appears or, ``gap_wait`` after the
event that followed it, is taken for rolled back. ``expiring`` is a daily-style scan,
soonest to expire first through every page: one row per handler and certificate (the
row id is derived from both, so a certificate is announced once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import string
import time
import uuid
from email.message import EmailMessage
from typing import Any

from cryptography import x509

from .clock import Clock, system_clock
from .errors import BadRequest, Conflict, GatewayError, Unavailable
from .sealing import Sealer
from .store import Store
from .store.queries import Queries
from .store.records import (
    CertificateFilter,
    CertificateRecord,
    EventRecord,
    NotificationHandlerRecord,
    OutboxRecord,
)

log = logging.getLogger(__name__)

EVENTS = ("issued", "pending", "rejected", "revoked", "expiring")
CURSOR = "notify_events"
BATCH = 500
GAP_WAIT = dt.timedelta(minutes=2)
"""How long a missing event id holds the cursor back: longer than any transaction that
records an event stays open, so an id still missing after it was rolled back."""
DEFAULT_SUBJECT = "[gateway] ${event}: ${subject}"
DEFAULT_BODY = ("${event} on ${protocol_config} (CA ${ca}): serial ${serial}, subject ${subject}, "
                "profile ${profile}, status ${status}, not after ${not_after}${reason}\n")


def kind_of(event: EventRecord) -> str | None:
    """The notification an audit event is, if any."""
    if event.status == "pending" and event.type in ("issue", "renew", "scep_request"):
        return "pending"
    if event.status != "success":
        return None
    if event.type in ("issue", "renew", "keygen", "approve"):  # approve: an operator issued a held request
        return "issued"
    if event.type == "reject":
        return "rejected"
    if event.type == "revoke":
        return "revoked"
    return None


def _matches(handler: NotificationHandlerRecord, kind: str, values: dict[str, str]) -> bool:
    if kind not in handler.events:
        return False
    for name in ("protocol_config", "ca", "profile", "status"):
        wanted = handler.conditions.get(name)
        if wanted is not None and values.get(name) != wanted:
            return False
    return True


def render(template: str, values: dict[str, str]) -> str:
    return string.Template(template).safe_substitute(values)


def _settled(cursor: int, events: list[EventRecord], before: dt.datetime) -> int:
    """The new cursor: past the events read (ordered by id), but not past a missing id
    unless the event after it was recorded before ``before`` (the gap is then a rollback)."""
    for event in events:
        assert event.id is not None
        if event.id != cursor + 1 and event.created_at > before:
            break
        cursor = event.id
    return cursor


class Notifier:
    """Turns audit events (and certificates nearing expiry) into outbox rows. ``page``:
    events read per pass and certificates per page of the expiring scan."""

    def __init__(self, store: Store, *, clock: Clock = system_clock, page: int = BATCH,
                 gap_wait: dt.timedelta = GAP_WAIT) -> None:
        self._store = store
        self._clock = clock
        self._page = page
        self._gap_wait = gap_wait

    async def _values(self, q: Queries, event: EventRecord, kind: str) -> dict[str, str]:
        values = {"event": kind, "serial": event.serial or "", "protocol_config": event.protocol_config or "",
                  "ca": event.ca_id or "", "status": event.status, "request": event.request_id or "",
                  "reason": f", reason {event.detail['reason']}" if event.detail.get("reason") else "",
                  "subject": "", "profile": "", "not_after": ""}
        if event.serial:
            cert = await q.certificates.get(event.serial)
            if cert is not None:
                values.update(subject=cert.subject, profile=cert.profile, not_after=cert.not_after.isoformat(),
                              protocol_config=values["protocol_config"] or (cert.protocol_config or ""))
        elif event.request_id:  # pending or rejected: no certificate yet, the held request says
            req = await q.requests.get(event.request_id)
            if req is not None:
                values.update(profile=req.profile, ca=values["ca"] or req.ca_id,
                              protocol_config=values["protocol_config"] or (req.protocol_config or ""))
                try:
                    values["subject"] = x509.load_pem_x509_csr(req.csr_pem.encode()).subject.rfc4514_string()
                except ValueError:
                    pass
        return values

    async def run_once(self) -> int:
        """Match the events past the cursor; returns how many outbox rows were written."""
        written = 0
        async with self._store.transaction() as q:
            cursor = await q.generations.get(CURSOR)
            events = await q.events.after(cursor, self._page)
            if not events:
                return 0
            handlers = await q.notifications.list(enabled_only=True)
            for event in events:
                kind = kind_of(event)
                if kind is None:
                    continue
                wanted = [h for h in handlers if kind in h.events and event.created_at >= h.created_at]
                if not wanted:
                    continue
                values = await self._values(q, event, kind)
                for handler in wanted:
                    if _matches(handler, kind, values):
                        row = _row(handler, kind, values, f"{handler.id}:{event.id}")
                        if await q.outbox.get(row.id) is None:  # read before, behind a gap
                            await q.outbox.add(row)  # a replica's same row: Conflict, this pass rolls back
                            written += 1
            newest = _settled(cursor, events, self._clock() - self._gap_wait)
            if newest != cursor and not await q.generations.advance(CURSOR, cursor, newest):
                raise Conflict("another process matched these events")  # rolls this pass back
        return written

    async def expiring(self, now: dt.datetime | None = None) -> int:
        """One ``expiring`` row per handler and certificate inside its window (once each),
        every page of them, soonest to expire first."""
        now = now or self._clock()
        written = 0
        async with self._store.read() as q:
            handlers = [h for h in await q.notifications.list(enabled_only=True)
                        if "expiring" in h.events and h.expiring_days]
        for handler in handlers:
            assert handler.expiring_days is not None
            flt = CertificateFilter(status="valid", expires_before=now + dt.timedelta(days=handler.expiring_days),
                                    expires_after=now, ca_id=handler.conditions.get("ca"),
                                    protocol_config=handler.conditions.get("protocol_config"),
                                    profile=handler.conditions.get("profile"))
            after: tuple[dt.datetime, str] | None = None
            while True:
                async with self._store.read() as q:
                    certs = await q.certificates.expiring_page(flt, after, self._page)
                written += await self._announce_expiring(handler, certs)
                if len(certs) < self._page:
                    break
                after = (certs[-1].not_after, certs[-1].serial)
        return written

    async def _announce_expiring(self, handler: NotificationHandlerRecord, certs: list[CertificateRecord]) -> int:
        written = 0
        for cert in certs:
            values = {"event": "expiring", "serial": cert.serial, "protocol_config": cert.protocol_config or "",
                      "ca": cert.ca_id, "status": "valid", "request": cert.request_id or "", "reason": "",
                      "subject": cert.subject, "profile": cert.profile, "not_after": cert.not_after.isoformat()}
            row = _row(handler, "expiring", values, f"{handler.id}:expiring:{cert.serial}")
            try:
                async with self._store.transaction() as q:
                    if await q.outbox.get(row.id) is not None:
                        continue
                    await q.outbox.add(row)
                written += 1
            except GatewayError:  # another replica wrote it first
                continue
        return written


def _row(handler: NotificationHandlerRecord, kind: str, values: dict[str, str], key: str) -> OutboxRecord:
    """The outbox row; its id derives from ``key`` so the same notification is written once."""
    return OutboxRecord(id=hashlib.sha256(key.encode()).hexdigest()[:32], destination_id=handler.id, event=kind,
                        serial=values.get("serial") or None, payload={"values": values})


def handler_settings(handler_id: str, sealer: Sealer, action: str, *, url: str | None, secret: str | None,
                     smtp_host: str | None, smtp_port: int, starttls: bool, smtp_user: str | None,
                     smtp_password: str | None, sender: str | None, to: list[str], trust_pem: str | None,
                     subject: str | None, body: str | None) -> dict[str, Any]:
    """A handler's settings, its webhook secret or SMTP password sealed to it (with the outbox
    worker's sealer, ``distribution``, which opens them at delivery)."""
    out: dict[str, Any] = {"trust_pem": trust_pem, "subject": subject or DEFAULT_SUBJECT, "body": body or DEFAULT_BODY}
    if action == "webhook":
        if not url or not url.startswith("https://"):
            raise BadRequest("a webhook URL must be https://")
        if not secret or len(secret) < 16:
            raise BadRequest("a webhook needs a signing secret of at least 16 characters")
        out.update(url=url, secret=sealer.seal(secret.encode(), f"{handler_id}:secret"))
    elif action == "email":
        if not smtp_host or not to or not sender:
            raise BadRequest("an e-mail handler needs --smtp-host, --from and at least one --to")
        if smtp_user and not smtp_password:
            raise BadRequest("an SMTP user needs its password")
        if smtp_user and not starttls:
            raise BadRequest("SMTP authentication without STARTTLS would send the password in the clear")
        out.update(smtp_host=smtp_host, smtp_port=smtp_port, starttls=starttls, smtp_user=smtp_user, sender=sender,
                   to=to, smtp_password=sealer.seal(smtp_password.encode(), f"{handler_id}:smtp_password")
                   if smtp_password else None)
    else:
        raise BadRequest(f"the action is webhook or email, not {action!r}")
    return out


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 over "<t>.<body>">`` (receivers check it and the age)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


async def deliver(handler: NotificationHandlerRecord, entry: OutboxRecord, sealer: Sealer,
                  post: Any) -> str | None:
    """Send one notification; None when sent, else why not (the worker retries)."""
    s = handler.settings
    values = {**entry.payload.get("values", {}), "handler": handler.name}
    message = render(str(s.get("body", DEFAULT_BODY)), values)
    if handler.action == "webhook":
        body = json.dumps({"id": entry.id, "handler": handler.name, "event": entry.event, **values,
                           "message": message}).encode()
        secret = sealer.unseal(str(s["secret"]), f"{handler.id}:secret")
        headers = {"Content-Type": "application/json", "Idempotency-Key": entry.id,
                   "X-Gateway-Event": entry.event, "X-Gateway-Signature": signature(secret, int(time.time()), body)}
        status, text = await post(handler, str(s["url"]), body, headers)
        return None if 200 <= status < 300 else f"HTTP {status}: {text}"
    mail = EmailMessage()
    mail["From"] = str(s["sender"])
    mail["To"] = ", ".join(s["to"])
    mail["Subject"] = render(str(s.get("subject", DEFAULT_SUBJECT)), values)
    mail["Message-ID"] = f"<{entry.id}@enrollment-gateway>"  # the same id when resent: receivers can dedupe
    mail.set_content(message)
    password = sealer.unseal(str(s["smtp_password"]), f"{handler.id}:smtp_password").decode() \
        if s.get("smtp_password") else None
    try:
        await asyncio.to_thread(_smtp_send, s, password, mail)
    except (OSError, smtplib.SMTPException) as exc:
        return f"SMTP {s['smtp_host']}:{s['smtp_port']}: {type(exc).__name__}: {exc}"[:300]
    return None


def _smtp_send(s: dict[str, Any], password: str | None, mail: EmailMessage) -> None:
    context = ssl.create_default_context(cadata=s["trust_pem"]) if s.get("trust_pem") else ssl.create_default_context()
    with smtplib.SMTP(str(s["smtp_host"]), int(s["smtp_port"]), timeout=30) as smtp:
        smtp.ehlo()
        if s.get("starttls", True):
            smtp.starttls(context=context)
            smtp.ehlo()
        if s.get("smtp_user") and password:
            smtp.login(str(s["smtp_user"]), password)
        smtp.send_message(mail)


async def loop(notifier: Notifier, interval: float, expiring_every: float = 3600.0) -> None:
    last_expiring = 0.0
    while True:
        try:
            while await notifier.run_once():
                pass
            if time.monotonic() - last_expiring >= expiring_every:
                await notifier.expiring()
                last_expiring = time.monotonic()
        except Conflict:
            pass  # another replica matched them
        except (GatewayError, Unavailable) as exc:
            log.warning("notification pass failed: %s", exc.detail)
        await asyncio.sleep(interval)


def new_id() -> str:
    return uuid.uuid4().hex[:16]
