"""The running core of one gateway instance: store, profiles, CAs, authority, status.

Built once from a :class:`Config` and shared by the web app, the CLI and tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .authority import Authority, CRLPolicy
from .clock import Clock, system_clock
from .ca.local import LocalCASettings
from .ca.registry import CARegistry
from .ca.backend import PendingRequest
from .config import Config
from .errors import ErrorKind, GatewayError
from .leases import new_holder, release_lease, take_lease
from .metrics import CLUSTER_JOB_RUNS
from .profiles.loader import default_profiles_dir, load_profiles
from .profiles.model import Profile
from .status.responder import OCSPResponder
from .store import Store

if TYPE_CHECKING:
    from .door import Door
    from .distribution import Deliverer
    from .status.upstream import UpstreamStatus

log = logging.getLogger(__name__)

UPSTREAM_POLL_JOB = "upstream-poll"
CRL_REFRESH_JOB = "crl-refresh"
"""Cluster-wide jobs: run by the one process holding the job's lease (gateway/leases.py)."""


def load_all_profiles(config: Config) -> dict[str, Profile]:
    """Packaged defaults and the profiles adapters declare, overridden and extended by the
    data directory's profiles."""
    from .composition import declared_profiles

    profiles = load_profiles(default_profiles_dir())
    profiles.update(declared_profiles())
    if config.profiles_dir.is_dir():
        profiles.update(load_profiles(config.profiles_dir))
    return profiles


@dataclass
class Gateway:
    config: Config
    store: Store
    profiles: dict[str, Profile]
    cas: CARegistry
    authority: Authority
    ocsp: OCSPResponder
    clock: Clock = system_clock
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _doors: dict[str, "Door"] = field(default_factory=dict)
    _deliverer: "Deliverer | None" = None
    _upstream_status: "UpstreamStatus | None" = None
    holder: str = field(default_factory=new_holder)
    """This process's id in ``job_leases`` (the cluster-wide jobs it runs while it holds them)."""
    _held: set[str] = field(default_factory=set)
    _poll_after: dict[str, dt.datetime] = field(default_factory=dict)
    """Per held request, when its upstream said to ask again (its Retry-After), for the poll job."""
    _poll_failing: dict[str, str] = field(default_factory=dict)
    """Per upstream CA, the kind of failure its last poll had (audited once per kind, not per tick)."""

    @property
    def upstream_status(self) -> "UpstreamStatus":
        """Where upstream CAs publish CRL and OCSP, from their certificates (gateway/status/upstream.py)."""
        if self._upstream_status is None:
            from .status.upstream import UpstreamStatus

            self._upstream_status = UpstreamStatus(self.store)
        return self._upstream_status

    @property
    def deliverer(self) -> "Deliverer":
        """Pushes the outbox to distribution destinations (gateway/distribution.py)."""
        if self._deliverer is None:
            from .distribution import Deliverer

            self._deliverer = Deliverer(self.store, self.cas.sealer("distribution"))
        return self._deliverer

    def door(self, protocol: str) -> "Door":
        """The protocol's one door into this core (built once per protocol)."""
        from .door import Door

        found = self._doors.get(protocol)
        if found is None:
            found = self._doors[protocol] = Door(self, protocol)
        return found

    @classmethod
    async def open(cls, config: Config, *, store: Store | None = None,
                   clock: Clock = system_clock) -> "Gateway":
        profiles = load_all_profiles(config)
        passphrase = config.ca_passphrase()
        store = store or await Store.open(config.store_url)
        settings = LocalCASettings(
            passphrase=passphrase,
            crl_validity=config.duration("crl_validity"),
            crl_overlap=config.duration("crl_overlap"),
            crl_url=config.crl_url,
            ocsp_url=config.ocsp_url,
            ca_issuers_url=config.ca_issuers_url,
        )
        cas = CARegistry(store, settings, profiles)
        await cas.load()
        from .composition import protocol_names

        authority = Authority(
            store, cas, profiles, protocol_names(),
            CRLPolicy(settings.crl_validity, settings.crl_overlap), clock,
        )
        ocsp = OCSPResponder(
            store, cas, config.duration("ocsp_response_validity"), config.duration("ocsp_signer_validity"),
            clock,
        )
        return cls(config, store, profiles, cas, authority, ocsp, clock)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # a job that failed as it was stopped: one line, not a traceback
                log.warning("background job %s ended with %s: %s", task.get_name(), type(exc).__name__, exc)
        self._tasks.clear()
        for job in sorted(self._held):
            try:
                await release_lease(self.store, job, self.holder)
            except GatewayError:  # the store is down: the lease runs out by itself
                pass
        self._held.clear()
        if self._deliverer is not None:
            await self._deliverer.close()
        await self.cas.close()
        await self.store.close()

    # --- scheduled work ----------------------------------------------------------
    async def refresh_crls(self, force: bool = False) -> int:
        """Reissue every issuing CA's CRL that is due (all of them when forced)."""
        count = 0
        await self.cas.load()
        for ca in self.cas.issuing():
            if not ca.capabilities.crl:
                continue
            try:
                await self.authority.crl(ca.id, force=force)
                count += 1
            except GatewayError as exc:
                if exc.kind is ErrorKind.UNAVAILABLE:  # the store (or the CA) is away: next tick
                    log.warning("CRL refresh stopped at CA %s: %s", ca.id, exc.detail)
                    break
                log.error("CRL refresh failed for CA %s: %s", ca.id, exc.detail)
            except Exception:  # one CA's failure must not stop the others' CRLs
                log.exception("CRL refresh failed for CA %s", ca.id)
        return count

    def start_background(self) -> None:
        self._tasks.append(asyncio.create_task(self._crl_loop(), name="crl-scheduler"))
        self._tasks.append(asyncio.create_task(self._upstream_loop(), name="upstream-poller"))
        from .distribution import loop as outbox_loop

        self._tasks.append(asyncio.create_task(outbox_loop(self.deliverer, self.config.ca.outbox_interval),
                                               name="outbox-delivery"))
        from .notifications import Notifier
        from .notifications import loop as notify_loop

        self._tasks.append(asyncio.create_task(notify_loop(Notifier(self.store), self.config.ca.outbox_interval),
                                               name="notifications"))

    async def poll_upstream(self, *, when_due: bool = False) -> int:
        """Ask each upstream CA about the requests it holds; returns how many it decided.
        A request decided here is issued (or rejected) exactly as when its client polls:
        the next client poll then finds the certificate in the store. ``when_due`` (the
        poll job): skip a request until the Retry-After its upstream gave at the last poll
        here has passed."""
        async with self.store.read() as q:
            held = list(await q.requests.list(status="upstream"))
        now = self.clock()
        for gone in set(self._poll_after) - {rec.id for rec in held}:
            del self._poll_after[gone]
        decided = 0
        answered: set[str] = set()
        for rec in held:
            if when_due and self._poll_after.get(rec.id, now) > now:
                continue
            try:
                result = await self.authority.poll(rec.id)
            except GatewayError as exc:  # the upstream is down or refused: the request stays held
                log.warning("upstream poll of request %s at CA %s failed: %s", rec.id, rec.ca_id, exc.detail)
                await self._poll_failed(rec.ca_id, rec.id, exc)
                continue
            answered.add(rec.ca_id)
            if isinstance(result, PendingRequest) and result.status == "pending":
                if result.retry_after is not None:
                    self._poll_after[rec.id] = now + dt.timedelta(seconds=result.retry_after)
            else:
                decided += 1
        for ca_id in answered & set(self._poll_failing):
            log.info("upstream poll at CA %s answers again", ca_id)
            del self._poll_failing[ca_id]
        return decided

    async def _poll_failed(self, ca_id: str, request_id: str, exc: GatewayError) -> None:
        """An ``upstream_poll`` failure event the first time a CA's polls fail this way: an
        upstream down for a day is one event (and one more when it fails differently), not
        one per held request per tick."""
        kind = f"{exc.kind.value}: {exc.detail}"
        if self._poll_failing.get(ca_id) == kind:
            return
        self._poll_failing[ca_id] = kind
        try:
            await self.authority.events.record("upstream_poll", "failure", ca_id=ca_id, request_id=request_id,
                                               actor="gateway", error=exc.kind.value, detail=exc.detail)
        except GatewayError:  # the store itself is away: the log line above is all there is
            self._poll_failing.pop(ca_id, None)

    async def holds(self, job: str, interval: float) -> bool:
        """Take or renew the cluster-wide lease on ``job``, run every ``interval`` seconds:
        True while this process is the one that runs it (other replicas wait for the
        lease to run out, twice the interval and ``[ca] lease_margin``, if this one dies).
        Each run counts in ``gateway_cluster_job_runs_total``, so a scrape of every
        replica shows which one runs it."""
        ttl = dt.timedelta(seconds=2 * interval + self.config.ca.lease_margin)
        if await take_lease(self.store, job, self.holder, now=self.clock(), ttl=ttl):
            if job not in self._held:
                log.info("this process (%s) now runs the cluster-wide job %s", self.holder, job)
            self._held.add(job)
            CLUSTER_JOB_RUNS.labels(job).inc()
            return True
        if job in self._held:
            log.info("the cluster-wide job %s has passed to another process", job)
        self._held.discard(job)
        return False

    async def _upstream_loop(self) -> None:
        # One replica at a time (the lease); the compare-and-set on the request's status
        # also keeps a decision from being recorded twice if two ever overlap.
        interval = self.config.ca.upstream_poll_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.holds(UPSTREAM_POLL_JOB, interval):
                    await self.poll_upstream(when_due=True)
            except GatewayError as exc:
                log.warning("upstream poll failed: %s", exc.detail)

    async def _crl_loop(self) -> None:
        interval = self.config.ca.crl_check_interval
        while True:
            try:
                if await self.holds(CRL_REFRESH_JOB, interval):
                    await self.refresh_crls()
            except GatewayError as exc:  # the store is down: try again at the next tick
                log.warning("CRL refresh skipped: %s", exc.detail)
            await asyncio.sleep(interval)
