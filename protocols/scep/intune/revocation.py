"""Intune's revocation queue, carried out: download, revoke through the door, report.

When a device is retired, wiped or loses its SCEP profile, Intune queues a revocation
request (serial number, issuer name) for the CA that issued the certificate. A pass
(:func:`sync_revocations`) downloads the queue, revokes each certificate it names, and
uploads one result per request:

=====================================================  ===================================
what the gateway finds                                 result uploaded
=====================================================  ===================================
a valid (or held) certificate of this configuration    revoked; succeeded
the certificate already revoked                        succeeded (the library's examples:
                                                       what Intune asked for is true)
no certificate with that serial, or another issuer     failed, 4004 CertificateNotFound
ours, but of another configuration (or an RA)          failed, 4000 NonRetryable ("not ours")
the core refuses the revocation                        failed, 4000 NonRetryable, its detail
the store or CA unavailable                            no result: Intune hands the request
                                                       out again, the next pass retries it
=====================================================  ===================================

Intune's requests carry no reason; the gateway revokes with **cessationOfOperation**
(RFC 5280: the certificate is no longer needed for its purpose, which is what retiring
a device means; keyCompromise would claim what nobody knows).

Idempotent and resumable: a pass that dies after revoking and before uploading meets the
same request again; the certificate is then already revoked and the request is answered
succeeded without a second revocation. Every request is audited
(``intune_revocation``), the revocation itself too (the core's ``revoke`` event, actor
``intune:<config>``).

:class:`RevocationSync` runs a pass every ``revocation_sync_seconds`` for each enabled
Intune configuration, in one process of the cluster at a time: the pass is guarded by
a lease (``door.take_lease``: one holder across the cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509

from gateway.door import Door, ProtocolConfigRecord, RevocationReason, new_holder, serial_hex
from gateway.errors import ErrorKind, GatewayError

from ..challenge import normalized_name
from ..ra import RA_PROFILE
from ..settings import ScepSettings
from .client import NON_RETRYABLE, NOT_FOUND, IntuneClient, RevocationRequest, RevocationResult
from .clients import IntuneClients

log = logging.getLogger("gateway.scep.intune")

REASON = RevocationReason.cessation_of_operation
BATCH = 100
"""Requests per download; a full batch is followed by another download in the same pass."""
MAX_BATCHES = 20
TICK_SECONDS = 30.0
"""How often the scheduler looks for due configurations (shorter when an interval is)."""
LEASE_SLACK = dt.timedelta(seconds=120)


@dataclass
class SyncReport:
    """One pass: counts by outcome, and the result uploaded for each request context."""

    config_id: str
    revoked: int = 0
    already_revoked: int = 0
    not_found: int = 0
    not_ours: int = 0
    failed: int = 0
    deferred: int = 0
    results: list[RevocationResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"config": self.config_id, "revoked": self.revoked, "already_revoked": self.already_revoked,
                "not_found": self.not_found, "not_ours": self.not_ours, "failed": self.failed,
                "deferred": self.deferred}


def _serial(text: str) -> str | None:
    """Intune's serial (hex as successNotification sent it; colons or spaces tolerated)."""
    cleaned = text.replace(":", "").replace(" ", "").strip()
    try:
        return serial_hex(int(cleaned, 16))
    except ValueError:
        return None


def issuer_matches(issuer_name: str, issuer: x509.Name) -> bool:
    """Whether Intune's issuer name is ``issuer``: RFC 4514 (as notified) or the X.500
    order Windows writes (``CN=..., O=...`` read the other way round); compared as
    :func:`..challenge.normalized_name` compares subjects. An empty name matches (the
    library makes it optional)."""
    if not issuer_name.strip():
        return True
    try:
        parsed = x509.Name.from_rfc4514_string(issuer_name)
    except ValueError:
        return False
    want = normalized_name(issuer)
    return normalized_name(parsed) == want or normalized_name(x509.Name(list(reversed(parsed.rdns)))) == want


async def _one(door: Door, rec: ProtocolConfigRecord, request: RevocationRequest, report: SyncReport,
               actor: str) -> RevocationResult | None:
    ctx = request.request_context

    def failed(code: int, message: str) -> RevocationResult:
        return RevocationResult(ctx, False, code, message)

    serial = _serial(request.serial_number)
    cert = await door.find_certificate(serial) if serial is not None else None
    if cert is None or serial is None or not issuer_matches(request.issuer_name,
                                                            x509.load_der_x509_certificate(cert.der).issuer):
        report.not_found += 1
        return failed(NOT_FOUND, "no certificate with this serial number and issuer")
    if cert.protocol_config != rec.id or cert.profile == RA_PROFILE:
        report.not_ours += 1
        return failed(NON_RETRYABLE, "the certificate was not issued by this Intune configuration")
    if cert.status == "revoked":
        report.already_revoked += 1
        return RevocationResult(ctx, True)
    try:
        await door.revoke(serial, REASON, actor=actor, config_id=rec.id)
    except GatewayError as exc:
        if exc.kind is ErrorKind.UNAVAILABLE:
            report.deferred += 1
            log.warning("intune: revocation of %s deferred (%s); the next pass retries it", serial, exc.detail)
            return None
        again = await door.find_certificate(serial)
        if again is not None and again.status == "revoked":  # revoked meanwhile (another pass, an operator)
            report.already_revoked += 1
            return RevocationResult(ctx, True)
        report.failed += 1
        return failed(NON_RETRYABLE, exc.detail[:255])
    report.revoked += 1
    return RevocationResult(ctx, True)


async def sync_revocations(door: Door, client: IntuneClient, rec: ProtocolConfigRecord, *,
                           actor: str | None = None) -> SyncReport:
    """One pass over Intune's queue for ``rec`` (raises the client's errors when Intune
    cannot be reached; what was revoked before stays revoked and is answered next time)."""
    report = SyncReport(rec.id)
    actor = actor or f"intune:{rec.id}"
    for _ in range(MAX_BATCHES):
        requests = await client.download_revocations(BATCH)
        results: list[RevocationResult] = []
        for request in requests:
            result = await _one(door, rec, request, report, actor)
            await door.record_event(
                "intune_revocation", "success" if result is not None and result.succeeded else "failure",
                protocol_config=rec.id, serial=_serial(request.serial_number), actor=actor,
                request_context=request.request_context,
                error_code=result.error_code if result is not None else None,
                detail=result.error_message if result is not None else "deferred",
            )
            if result is not None:
                results.append(result)
        await client.upload_revocation_results(results)
        report.results.extend(results)
        if len(requests) < BATCH:
            break
    log.info("intune: revocation sync of %s: %s", rec.id, report.as_dict())
    return report


class RevocationSync:
    """The periodic sync of every Intune configuration, one lease per configuration."""

    def __init__(self, door: Door, clients: IntuneClients) -> None:
        self._door = door
        self._clients = clients
        self.holder = new_holder()
        self._last: dict[str, dt.datetime] = {}
        self._held: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def lease_name(config_id: str) -> str:
        return f"intune-revocation-sync:{config_id}"

    async def run_due(self) -> float:
        """Run the passes that are due; returns how long to sleep before the next look."""
        tick = TICK_SECONDS
        now = self._door.clock()
        for rec in await self._door.configurations(enabled_only=True):
            try:
                intune = ScepSettings.of(rec).intune
            except GatewayError:  # a broken configuration is reported where it is served
                continue
            if intune is None or intune.revocation_sync_seconds == 0:
                continue
            interval = dt.timedelta(seconds=intune.revocation_sync_seconds)
            tick = min(tick, interval.total_seconds())
            last = self._last.get(rec.id)
            if last is not None and now - last < interval:
                continue
            name = self.lease_name(rec.id)
            if not await self._door.take_lease(name, self.holder, ttl=interval + LEASE_SLACK):
                continue  # another process runs it; look again at the next tick (it may die)
            self._last[rec.id] = now
            self._held.add(name)
            try:
                await sync_revocations(self._door, await self._clients.client(rec.id, intune), rec)
            except GatewayError as exc:
                log.warning("intune: revocation sync of %s failed: %s; next try in %ss", rec.id, exc.detail,
                            intune.revocation_sync_seconds)
        return tick

    async def _forever(self) -> None:
        while True:
            try:
                tick = await self.run_due()
            except GatewayError as exc:  # the store is down: try again at the next tick
                log.warning("intune: revocation sync skipped: %s", exc.detail)
                tick = TICK_SECONDS
            except Exception:  # a bug must not end the schedule of every configuration
                log.exception("intune: revocation sync failed")
                tick = TICK_SECONDS
            await asyncio.sleep(tick)

    def start(self) -> None:
        """Start the schedule (the application's startup)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._forever(), name="scep-intune-revocations")

    async def stop(self) -> None:
        """Stop it and give up its leases (the application's cleanup)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in sorted(self._held):
            with contextlib.suppress(GatewayError):
                await self._door.release_lease(name, self.holder)
        self._held.clear()


def schedule(app: web.Application, door: Door, clients: IntuneClients) -> RevocationSync:
    """Run :class:`RevocationSync` while ``app`` runs."""
    sync = RevocationSync(door, clients)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        sync.start()
        yield
        await sync.stop()

    app.cleanup_ctx.append(lifecycle)
    return sync
