"""Certificate distribution: every certificate a protocol configuration issues (and,
when asked, each revocation) is pushed to the configuration's HTTPS destinations.

Durable and never in the way: the outbox row is written in the transaction that
stores the certificate, so a crash cannot lose a delivery or announce a certificate
that did not commit, and issuance never waits for a destination. A worker in each
gateway process delivers due rows: it claims a row with a lease (compare-and-set, so
two replicas never send it at once), POSTs the JSON payload with the row id as
``Idempotency-Key`` (a delivery interrupted after the receiver took it is sent again:
at least once, and the key lets the receiver keep it once). The id is derived from the
destination, the CA and serial and the event (:func:`outbox_id`), not drawn at random,
so it names the certificate at that destination, not one attempt to announce it: a
receiver that keeps the first body per key holds each certificate once. On failure it retries with
exponential backoff until ``MAX_ATTEMPTS``, then marks it ``failed`` (visible in
``GET /admin/outbox`` and ``gateway outbox list``; ``retry`` sends it again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import uuid
from typing import Any, Awaitable, Callable

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .ca.upstream.http import UpstreamHttp, open_credentials, seal_credentials, ssl_context
from .clock import Clock, system_clock
from .errors import BadRequest, GatewayError, NotFound
from .sealing import Sealer
from .store import Store
from .store.queries import Queries
from .store.records import CertificateRecord, DestinationRecord, NotificationHandlerRecord, OutboxRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
"""About 6 hours of retries with the backoff below, then ``failed``."""
LEASE = dt.timedelta(seconds=60)
BATCH = 50


def backoff(attempts: int) -> dt.timedelta:
    """5 s, 10 s, 20 s ... capped at one hour."""
    return dt.timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 3600))


def outbox_id(destination_id: str, event: str, ca_id: str, serial: str, change: str = "") -> str:
    """The row id and ``Idempotency-Key``: the same for the same certificate, destination
    and event (``change`` tells one status change of a certificate from the next)."""
    return hashlib.sha256(f"{destination_id}\0{event}\0{ca_id}\0{serial}\0{change}".encode()).hexdigest()[:32]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


async def enqueue_issued(q: Queries, rec: CertificateRecord, cert: x509.Certificate,
                         chain: Callable[[], Awaitable[tuple[x509.Certificate, ...]]]) -> int:
    """Outbox rows for a certificate just inserted on ``q`` (same transaction); returns how
    many. ``chain`` is asked only when a destination wants the chain."""
    if rec.protocol_config is None:
        return 0
    destinations = await q.destinations.list(rec.protocol_config, enabled_only=True)
    for dest in destinations:
        payload: dict[str, Any] = {
            "event": "issued", "protocol_config": rec.protocol_config, "ca": rec.ca_id, "serial": rec.serial,
            "subject": rec.subject, "sans": rec.sans, "profile": rec.profile, "entity": rec.entity_id,
            "not_before": rec.not_before.isoformat(), "not_after": rec.not_after.isoformat(),
            "certificate": _pem(cert),
        }
        if dest.settings.get("include_chain"):
            payload["chain"] = [_pem(c) for c in await chain()]
        await q.outbox.add(OutboxRecord(id=outbox_id(dest.id, "issued", rec.ca_id, rec.serial),
                                        destination_id=dest.id, event="issued", serial=rec.serial, payload=payload))
    return len(destinations)


async def enqueue_revoked(q: Queries, rec: CertificateRecord, status: str, reason: int | None,
                          at: dt.datetime | None) -> None:
    """Outbox rows announcing a status change (revoked, hold, valid again) to destinations
    that asked for revocations."""
    if rec.protocol_config is None:
        return
    for dest in await q.destinations.list(rec.protocol_config, enabled_only=True):
        if not dest.settings.get("include_revocations"):
            continue
        payload = {"event": "revoked" if status == "revoked" else status, "protocol_config": rec.protocol_config,
                   "ca": rec.ca_id, "serial": rec.serial, "status": status, "reason": reason,
                   "at": at.isoformat() if at else None}
        change = at.isoformat() if at else uuid.uuid4().hex  # valid again has no time: each its own
        await q.outbox.add(OutboxRecord(id=outbox_id(dest.id, str(payload["event"]), rec.ca_id, rec.serial, change),
                                        destination_id=dest.id, event=str(payload["event"]), serial=rec.serial,
                                        payload=payload))


def destination_settings(destination_id: str, sealer: Sealer, *, url: str, username: str | None,
                         password: str | None, client_certificate_pem: str | None, client_key_pem: bytes | None,
                         trust_pem: str | None, include_chain: bool, include_revocations: bool) -> dict[str, Any]:
    """A destination's settings, its password or client key sealed to it."""
    if not url.startswith("https://"):
        raise BadRequest("a distribution destination URL must be https://")
    sealed = seal_credentials(destination_id, sealer, peer="destination", username=username, password=password,
                              client_certificate_pem=client_certificate_pem, client_key_pem=client_key_pem,
                              required=False)
    return {"trust_pem": trust_pem, "include_chain": include_chain, "include_revocations": include_revocations,
            **sealed}


class Deliverer:
    """Delivers due outbox rows (one per gateway process; replicas share the work)."""

    def __init__(self, store: Store, sealer: Sealer, clock: Clock = system_clock) -> None:
        self._store = store
        self._sealer = sealer
        self._clock = clock
        self._clients: dict[str, tuple[dict[str, Any], UpstreamHttp, dict[str, str]]] = {}

    def _client(self, dest: DestinationRecord) -> tuple[UpstreamHttp, dict[str, str]]:
        cached = self._clients.get(dest.id)
        if cached is not None and cached[0] == dest.settings:
            return cached[1], cached[2]
        username, password, http = open_credentials(dest.id, self._sealer, dest.settings,
                                                    label=f"destination {dest.id}", peer=f"receiver at {dest.url}")
        headers = {"Content-Type": "application/json"}
        if username and password:
            headers["Authorization"] = aiohttp.encode_basic_auth(username, password)
        self._clients[dest.id] = (dict(dest.settings), http, headers)
        return http, headers

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many were delivered."""
        now = self._clock()
        async with self._store.read() as q:
            due = await q.outbox.due(now, BATCH)
        delivered = 0
        for entry in due:
            async with self._store.transaction() as q:
                if not await q.outbox.claim(entry.id, now, now + LEASE):
                    continue  # another worker has it
                dest = await q.destinations.get(entry.destination_id)
                handler = await q.notifications.get(entry.destination_id) if dest is None else None
            if handler is not None:
                ok = await self._notify(entry, handler)
            else:
                ok = await self._deliver(entry, dest)
            delivered += ok
        return delivered

    async def _post(self, handler: NotificationHandlerRecord, url: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int, str]:
        http = UpstreamHttp(f"notification {handler.name}", f"webhook {url}",
                            ssl_context(handler.settings.get("trust_pem")))
        try:
            reply = await http.request("POST", url, data=body, headers=headers)
        finally:
            await http.close()
        return reply.status, reply.text(120)

    async def _notify(self, entry: OutboxRecord, handler: NotificationHandlerRecord) -> bool:
        from .notifications import deliver

        try:
            error = None if not handler.enabled else await deliver(handler, entry, self._sealer, self._post)
            if not handler.enabled:
                error = "the notification handler is disabled"
        except GatewayError as exc:
            error = exc.detail
        if error is None:
            async with self._store.transaction() as q:
                await q.outbox.update(entry.id, status="delivered", delivered_at=self._clock(),
                                      attempts=entry.attempts + 1, lease_until=None, last_error=None)
            log.info("notified %s: %s %s", handler.name, entry.event, entry.serial or "")
            return True
        await self._failed(entry, error, final=not handler.enabled)
        return False

    async def _failed(self, entry: OutboxRecord, error: str, *, final: bool) -> None:
        attempts = entry.attempts + 1
        async with self._store.transaction() as q:
            await q.outbox.update(entry.id, attempts=attempts, last_error=error[:500], lease_until=None,
                                  status="failed" if final or attempts >= MAX_ATTEMPTS else "pending",
                                  next_attempt_at=self._clock() + backoff(attempts))
        log.warning("delivery %s of %s %s (attempt %d): %s", entry.id, entry.event, entry.serial or "",
                    attempts, error)

    async def _deliver(self, entry: OutboxRecord, dest: DestinationRecord | None) -> bool:
        error: str
        if dest is None or not dest.enabled:
            error = "the destination was removed or disabled"
        else:
            try:
                http, headers = self._client(dest)
                reply = await http.request(
                    "POST", dest.url, data=json.dumps({"id": entry.id, **entry.payload}).encode(),
                    headers={**headers, "Idempotency-Key": entry.id, "X-Gateway-Event": entry.event})
                if 200 <= reply.status < 300:
                    async with self._store.transaction() as q:
                        await q.outbox.update(entry.id, status="delivered", delivered_at=self._clock(),
                                              attempts=entry.attempts + 1, lease_until=None, last_error=None)
                    log.info("delivered %s of %s to %s", entry.event, entry.serial, dest.url)
                    return True
                error = f"HTTP {reply.status}: {reply.text(120)}"
            except GatewayError as exc:
                error = exc.detail
        await self._failed(entry, error, final=dest is None or not dest.enabled)
        return False

    async def retry(self, entry_id: str) -> OutboxRecord:
        """An operator's 'send it again': a failed (or pending) row becomes due now."""
        async with self._store.transaction() as q:
            entry = await q.outbox.get(entry_id)
            if entry is None:
                raise NotFound(f"no outbox entry {entry_id}")
            if entry.status == "delivered":
                raise BadRequest(f"outbox entry {entry_id} was delivered")
            await q.outbox.update(entry_id, status="pending", next_attempt_at=self._clock(), lease_until=None)
            found = await q.outbox.get(entry_id)
        assert found is not None
        return found

    async def close(self) -> None:
        for _, http, _ in self._clients.values():
            await http.close()
        self._clients.clear()


async def loop(deliverer: Deliverer, interval: float) -> None:
    while True:
        try:
            while await deliverer.run_once() >= BATCH:
                pass
        except GatewayError as exc:
            log.warning("outbox delivery pass failed: %s", exc.detail)
        await asyncio.sleep(interval)
