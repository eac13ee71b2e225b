"""Prometheus metrics of one app instance (own registry, so tests can build many apps)."""

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class HubMetrics:
    """The counters and histograms the hub exports at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "qihub_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qihub_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.certificates_submitted = Counter(
            "qihub_certificates_submitted_total",
            "Certificates registered",
            ["source"],
            registry=self.registry,
        )
        self.documents_rejected = Counter(
            "qihub_documents_rejected_total", "Documents refused at validation", registry=self.registry
        )

    def render(self) -> Response:
        """The exposition-format page."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI, metrics: HubMetrics) -> None:
    """Count and time every request by route template (not raw path, to keep cardinality bounded)."""

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.latency.labels(request.method, template).observe(time.perf_counter() - started)
        return response
