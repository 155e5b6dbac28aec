"""HTTP server metrics on a per-app registry, named by the Prometheus naming guide."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.gc_collector import GCCollector

# Latency buckets in seconds, from a cached token check to a slow password hash.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


def route_label(request: web.Request) -> str:
    """The route template (never the raw path), or 'unmatched' for 404 and 405 answers."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "OTHER"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class HttpMetrics:
    """Request count, latency and concurrency of one process, labelled by route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Process, platform and GC collectors go on the app's own registry, not the global one.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.requests = Counter(
            "http_server_requests",
            "HTTP requests answered, by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Time from request received to response prepared.",
            ["route", "method", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_server_requests_in_flight",
            "Requests being handled now.",
            registry=registry,
        )
        # Label children by (route, method, status class), bound on first use: labels()
        # validates and looks up its arguments each call, which cost more than inc/observe.
        # Bounded like the labels themselves.
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        labels = (route_label(request), method_label(request.method), status_class(status))
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (
                self.requests.labels(*labels),
                self.duration.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)
