"""Prometheus metrics, in one registry per process (``/metrics``).

Counters live in the serving process; with ``[server] workers > 1`` each worker writes
them to a shared directory and a scrape of any worker sums them all
(:func:`scrape_registry`). A CLI command counts in its own short-lived process (``gateway cert issue`` counts under protocol ``cli``
there, which no scrape sees). What the store knows is read when ``/metrics`` is
scraped (:func:`refresh_from_store`), so it is the same on every worker and replica:
CRL age, and certificates issued outside any configuration by source
(``gateway_direct_issued_total``), which is where the CLI's issuance shows.

Label values are bounded: protocols, outcomes and reasons are fixed sets from the
code, configuration and CA labels name only configurations and CAs that exist
(:data:`UNKNOWN` otherwise), so a client cannot grow the registry with made-up URLs.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import TYPE_CHECKING, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .runtime import Gateway

REGISTRY = CollectorRegistry(auto_describe=True)

UNKNOWN = "(unknown)"
"""The configuration or CA label of a request that named none that exists."""

HTTP_REQUESTS = Counter(
    "gateway_http_requests_total", "HTTP requests by route and status",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "gateway_http_request_seconds", "HTTP request latency by route", ["route"], registry=REGISTRY,
)
CERTIFICATES_ISSUED = Counter(
    "gateway_certificates_issued_total", "Certificates issued by CA", ["ca"], registry=REGISTRY,
)
ENROLLMENTS = Counter(
    "gateway_enrollments_total",
    "Enrollments that reached the core, by protocol, configuration and outcome "
    "(issued, pending, refused, error); reason: the core's error kind",
    ["protocol", "configuration", "outcome", "reason"], registry=REGISTRY,
)
PROTOCOL_ERRORS = Counter(
    "gateway_protocol_errors_total",
    "Error answers of a protocol, by configuration and the protocol's own reason "
    "(ACME problem type, SCEP failInfo, EST error kind)",
    ["protocol", "configuration", "reason"], registry=REGISTRY,
)
CLUSTER_JOB_RUNS = Counter(
    "gateway_cluster_job_runs_total",
    "Runs of a cluster-wide job (CRL refresh, upstream polling) by this process, which held its lease",
    ["job"], registry=REGISTRY,
)
OCSP_RESPONSES = Counter(
    "gateway_ocsp_responses_total",
    "OCSP answers by CA and status: good, revoked, unknown per certificate asked about, "
    "or the error status of an unsuccessful response",
    ["ca", "status"], registry=REGISTRY,
)


class _CrlAge(Collector):
    """Seconds since thisUpdate of each CA's latest stored CRL, as read at the last scrape
    (from the store, so the same whichever worker or replica answers)."""

    def __init__(self) -> None:
        self.ages: dict[str, float] = {}

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("gateway_crl_age_seconds",
                                   "Seconds since thisUpdate of the CA's latest stored CRL", labels=["ca"])
        for ca, age in sorted(self.ages.items()):
            family.add_metric([ca], age)
        yield family


CRL_AGE = _CrlAge()
REGISTRY.register(CRL_AGE)


class _DirectIssued(Collector):
    """Certificates issued outside any protocol configuration, as the store counts them
    at the last scrape: a counter (certificates are never deleted) that every process
    reads alike, unlike the in-process ones, so a ``gateway cert issue`` run elsewhere
    shows on the next scrape of any worker."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "gateway_direct_issued",
            "Certificates in the store issued outside any protocol configuration, by CA and "
            "source: cli (gateway cert issue), admin (admin API), internal (the gateway's own)",
            labels=["ca", "source"],
        )
        for (ca, source), count in sorted(self.counts.items()):
            family.add_metric([ca, source], count)
        yield family


DIRECT_ISSUED = _DirectIssued()
REGISTRY.register(DIRECT_ISSUED)

OUTCOMES = ("issued", "pending", "refused", "error")


def count_enrollment(protocol: str, configuration: str, outcome: str, reason: str = "") -> None:
    """One enrollment's outcome (``outcome`` one of :data:`OUTCOMES`)."""
    ENROLLMENTS.labels(protocol, configuration, outcome, reason).inc()


def count_protocol_error(protocol: str, configuration: str | None, reason: str) -> None:
    """One error answer of a protocol; ``configuration`` None: the request named none that exists."""
    PROTOCOL_ERRORS.labels(protocol, configuration or UNKNOWN, reason).inc()


def count_ocsp(ca: str | None, status: str) -> None:
    OCSP_RESPONSES.labels(ca or UNKNOWN, status).inc()


async def refresh_from_store(gateway: "Gateway") -> None:
    """Set what comes from the store (on every scrape: one read)."""
    now: dt.datetime = gateway.clock()
    async with gateway.store.read() as q:
        cas = await q.cas.list()
        direct = await q.certificates.outside_configurations()
    CRL_AGE.ages = {ca.id: max(0.0, (now - ca.crl_this_update).total_seconds())
                    for ca in cas if ca.crl_this_update is not None}
    counts: dict[tuple[str, str], int] = {}
    for ca_id, event_type, actor, count in direct:
        key = (ca_id, _source(event_type, actor))
        counts[key] = counts.get(key, 0) + count
    DIRECT_ISSUED.counts = counts


def _source(event_type: str | None, actor: str | None) -> str:
    """Who issued a certificate outside any configuration, from its issuance event."""
    if event_type is None:
        return UNKNOWN  # its event was never written (a crash between the two commits)
    if event_type == "internal_issue":
        return "internal"
    if actor is not None and (actor == "cli" or actor.startswith("cli:")):
        return "cli"
    return "admin"


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set by ``gateway serve`` for its workers (gateway/web/workers.py): prometheus_client
then keeps every worker's counters in files there, and any worker's scrape sums them."""


def scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` renders: this process's registry, or with ``[server] workers > 1``
    the counters and histograms of every worker summed (prometheus_client's multiprocess
    mode) beside the store-derived families, which every worker reads alike."""
    path = os.environ.get(MULTIPROCESS_ENV)
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    registry.register(CRL_AGE)
    registry.register(DIRECT_ISSUED)
    return registry
