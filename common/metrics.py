"""HTTP server metrics on a per-app registry, named by the Prometheus naming guide."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

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


class RequestHistogram(Collector):
    """A latency histogram by label values, with a request counter beside it, kept in plain
    Python numbers and exposed through the registry like prometheus_client's own.

    Why not prometheus_client's Histogram and Counter here: every observe of theirs takes a
    lock per value it touches (sum, bucket, count), which on the request path of a busy
    process cost more than everything else the metrics do. Requests are counted on the
    event loop's thread only, so no lock is needed; a scrape reads the numbers as they are
    (at worst one request apart between a bucket and the count, as with the locked ones).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labels: Sequence[str],
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS,
        counter: tuple[str, str] | None = None,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._bounds = tuple(buckets)
        self._counter = counter
        # label values -> [count per bucket ..., count above the last bound, sum]
        self._series: dict[tuple[str, ...], list[float]] = {}
        # label values -> the latest exemplar of each bucket (traced requests only)
        self._exemplars: dict[tuple[str, ...], list[Exemplar | None]] = {}
        registry.register(self)

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0] * (len(self._bounds) + 1) + [0.0]
        series[bisect.bisect_left(self._bounds, seconds)] += 1
        series[-1] += seconds

    def exemplar(self, labels: tuple[str, ...], seconds: float, trace_id: str) -> None:
        """Keep `trace_id` as the exemplar of the bucket `seconds` falls in (OpenMetrics
        exposition only): the latest sampled request's, so a spike leads to a trace."""
        exemplars = self._exemplars.get(labels)
        if exemplars is None:
            exemplars = self._exemplars[labels] = [None] * (len(self._bounds) + 1)
        exemplars[bisect.bisect_left(self._bounds, seconds)] = Exemplar(
            {"trace_id": trace_id}, seconds, time.time()
        )

    def count(self, labels: tuple[str, ...]) -> int:
        series = self._series.get(labels)
        return int(sum(series[:-1])) if series else 0

    def describe(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        if self._counter is not None:
            yield CounterMetricFamily(self._counter[0], self._counter[1], labels=self._labels)

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        histogram = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        counter = (
            CounterMetricFamily(self._counter[0], self._counter[1], labels=self._labels)
            if self._counter is not None else None
        )
        for labels, series in list(self._series.items()):
            exemplars = self._exemplars.get(labels) or [None] * len(series[:-1])
            cumulative, buckets = 0, []
            for bound, count, exemplar in zip(
                (*self._bounds, float("inf")), series[:-1], exemplars, strict=True
            ):
                cumulative += count
                buckets.append(
                    (_bound_text(bound), cumulative)
                    if exemplar is None
                    else (_bound_text(bound), cumulative, exemplar)
                )
            histogram.add_metric(list(labels), buckets, series[-1])
            if counter is not None:
                counter.add_metric(list(labels), cumulative)
        yield histogram
        if counter is not None:
            yield counter


class LoopCounter(Collector):
    """A counter by label values, kept in plain ints, for counts taken on every request on
    the event loop's thread. prometheus_client's Counter costs each increment four calls
    and a lock (see RequestHistogram); a child here costs one call."""

    def __init__(
        self, registry: CollectorRegistry, name: str, documentation: str, labels: Sequence[str]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._children: dict[tuple[str, ...], LoopCount] = {}
        registry.register(self)

    def labels(self, *values: str) -> LoopCount:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = LoopCount()
        return child

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family


class LoopCount:
    """One series of a LoopCounter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class HttpMetrics(Collector):
    """Request count, latency and concurrency of one process, labelled by route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Process, platform and GC collectors go on the app's own registry, not the global one.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.requests = RequestHistogram(
            registry,
            "http_server_request_duration_seconds",
            "Time from request received to response prepared.",
            ["route", "method", "status_class"],
            counter=("http_server_requests", "HTTP requests answered, by route template, method and status class."),
        )
        self.in_flight = 0
        registry.register(self)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("http_server_requests_in_flight", "Requests being handled now.")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("http_server_requests_in_flight", "Requests being handled now.", value=self.in_flight)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        self.requests.observe(
            (route_label(request), method_label(request.method), status_class(status)), seconds
        )

    def exemplar(self, request: web.Request, status: int, seconds: float, trace_id: str) -> None:
        """A sampled request's trace id on the latency bucket it falls in (common.telemetry)."""
        self.requests.exemplar(
            (route_label(request), method_label(request.method), status_class(status)),
            seconds,
            trace_id,
        )


# Declared beside its type and re-exported by common.app_keys (no import circle).
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
