"""Prometheus metrics of one app instance (own registry, so tests can build many apps)."""

import time

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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


class MetricsMiddleware:
    """Count and time every request by route template (raw paths would explode the label cardinality).

    Plain ASGI rather than BaseHTTPMiddleware: no extra task and body copy per request.
    """

    def __init__(self, app: ASGIApp, metrics: HubMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, recording its status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, metrics: HubMetrics) -> None:
    """Measure every request of the app."""
    app.add_middleware(MetricsMiddleware, metrics=metrics)
