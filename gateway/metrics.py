"""Prometheus metrics, in one registry per process (``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
OCSP_RESPONSES = Counter(
    "gateway_ocsp_responses_total", "OCSP responses served by CA", ["ca"], registry=REGISTRY,
)
