"""OpenTelemetry traces for every Passgate process, configured by the standard OTEL_* variables.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
OTEL_TRACES_EXPORTER=otlp is set (OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none
win). The choice is made once, at start (`start_tracing`): when off, nothing is installed
and no request pays for tracing; when on, `Tracing.install` adds the server span to the
app and the process's libraries (auth's SQLAlchemy engine, Redis) are instrumented.

The SDK reads the rest of the standard set itself: OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES (the resource), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
(parent-based by default, so a sampled request stays sampled across the processes),
OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout, compression) and OTEL_BSP_* (batching).
Export is OTLP over HTTP with protobuf, batched on the SDK's own thread: a request never
waits for it, and a collector that is down costs only the spans it drops, counted in
`tracing_spans_dropped_total`.

Span ids and the W3C traceparent: common.tracing parses the caller's traceparent (the edge
binds it before anything runs); the server span continues it and then becomes the
request's TraceContext, so log lines, problem bodies and spans name one trace id.

Why the server span is made here rather than by opentelemetry-instrumentation-aiohttp-server:
that middleware parses the traceparent again, cannot hand its ids to the edge's context (so
logs would name another trace when a request starts one), and records the URL with its
query string.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace import TraceFlags, Tracer
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from common.app_keys import HTTP_METRICS, REGISTRY, TRACE
from common.context import trace_id_var
from common.metrics import UNMATCHED_ROUTE, route_label
from common.errors import Problem
from common.settings import SettingsError
from common.tracing import TraceContext

# Declared here, beside what sets it: present only when tracing is on.
TRACER = web.AppKey("tracer", Tracer)

DEFAULT_MAX_QUEUE_SIZE = 2048  # the SDK's default for OTEL_BSP_MAX_QUEUE_SIZE
# Probes and scrapes: frequent, always the same, and each would be a trace of its own.
UNTRACED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_OFF = {"none", ""}


def tracing_wanted(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces (OTLP is the one exporter offered)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if exporters - _OFF - {"otlp"}:
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: "
            "only 'otlp' or 'none' is supported"
        )
    if "none" in exporters:
        return False
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "otlp" in exporters or bool(endpoint)


def _check_protocol(env: Mapping[str, str]) -> None:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol and protocol.strip() != "http/protobuf":
        raise SettingsError(
            f"OTLP protocol {protocol!r} is not supported: Passgate exports http/protobuf"
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{name} must be a positive whole number, not {text!r}")
    return int(text)


class SpanAccounting(Collector):
    """Spans exported and dropped, as Prometheus counters. Updated from the request path and
    from the SDK's export thread, so under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending = 0  # handed to the batch processor, not yet through an export
        self.exported = 0
        self.dropped = {"queue_full": 0, "export_failed": 0}

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield from self.collect()

    def collect(self) -> Iterator[CounterMetricFamily]:
        exported = CounterMetricFamily(
            "tracing_spans_exported", "Spans the OTLP collector accepted.", value=self.exported
        )
        dropped = CounterMetricFamily(
            "tracing_spans_dropped",
            "Sampled spans never exported: the export queue was full, or the collector "
            "refused or could not be reached.",
            labels=["reason"],
        )
        for reason, count in self.dropped.items():
            dropped.add_metric([reason], count)
        yield exported
        yield dropped

    def admit(self, limit: int) -> bool:
        with self._lock:
            if self.pending >= limit:
                self.dropped["queue_full"] += 1
                return False
            self.pending += 1
            return True

    def settle(self, count: int, exported: bool) -> None:
        with self._lock:
            self.pending -= count
            if exported:
                self.exported += count
            else:
                self.dropped["export_failed"] += count


class _CountingExporter(SpanExporter):
    """The OTLP exporter, with what each batch came to counted."""

    def __init__(self, exporter: SpanExporter, accounting: SpanAccounting) -> None:
        self._exporter = exporter
        self._accounting = accounting

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception:  # noqa: BLE001 - a failed export is a dropped batch, not a crash
            result = SpanExportResult.FAILURE
        self._accounting.settle(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class _BoundedBatchProcessor(SpanProcessor):
    """The SDK's BatchSpanProcessor, with the spans it would drop for a full queue dropped
    (and counted) here first: the SDK keeps its own count private."""

    def __init__(self, batch: BatchSpanProcessor, accounting: SpanAccounting, limit: int) -> None:
        self._batch = batch
        self._accounting = accounting
        self._limit = limit

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self._batch.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if self._accounting.admit(self._limit):
            self._batch.on_end(span)

    def shutdown(self) -> None:
        self._batch.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)


class Tracing:
    """This process's tracer provider, its export pipeline and the span counts."""

    def __init__(self, provider: TracerProvider, accounting: SpanAccounting) -> None:
        self.provider = provider
        self.accounting = accounting
        self.tracer = provider.get_tracer("passgate")

    def install(self, app: web.Application) -> None:
        """The server span on every request of `app`, the span counters on its registry,
        and the last spans exported when it stops."""
        app[TRACER] = self.tracer
        # Right inside the edge (the first middleware), outside the component's own: their
        # translations (a lost database into a 503) are what the span's status reports.
        app.middlewares.insert(1, server_span_middleware(self.tracer))
        app[REGISTRY].register(self.accounting)
        app.on_cleanup.append(self._flush)

    async def _flush(self, app: web.Application) -> None:
        # On a thread: the exporter's HTTP call blocks, and may wait for a slow collector.
        await asyncio.get_running_loop().run_in_executor(None, self.provider.shutdown)


def start_tracing(service: str, env: Mapping[str, str]) -> Tracing | None:
    """The process's tracing when the OTEL_* variables ask for it, else None (nothing is
    set up): the global tracer provider, and the libraries instrumented."""
    tracing = build_tracing(service, env)
    if tracing is not None:
        trace.set_tracer_provider(tracing.provider)
        _instrument_libraries(tracing.provider)
    return tracing


def build_tracing(
    service: str,
    env: Mapping[str, str],
    *,
    exporter: Callable[[], SpanExporter] | None = None,
) -> Tracing | None:
    """A tracer provider exporting in batches, or None when tracing is off. `exporter` makes
    the span exporter (default: OTLP over HTTP, configured by OTEL_EXPORTER_OTLP_*)."""
    if not tracing_wanted(env):
        return None
    _check_protocol(env)
    limit = _positive_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE_SIZE)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter
    accounting = SpanAccounting()
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over our default;
    # the sampler (None) is the SDK's reading of OTEL_TRACES_SAMPLER, parent-based always-on
    # when unset.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}).merge(_named(env)))
    batch = BatchSpanProcessor(
        _CountingExporter(exporter(), accounting),
        max_queue_size=limit,
        # The SDK refuses a batch larger than the queue; a small queue takes smaller batches.
        max_export_batch_size=min(limit, _positive_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)),
    )
    provider.add_span_processor(_BoundedBatchProcessor(batch, accounting, limit))
    return Tracing(provider, accounting)


def _named(env: Mapping[str, str]) -> Resource:
    """OTEL_SERVICE_NAME wins over the component's name (the SDK's precedence)."""
    name = env.get("OTEL_SERVICE_NAME", "").strip()
    return Resource({SERVICE_NAME: name}) if name else Resource.get_empty()


def _instrument_libraries(provider: TracerProvider) -> None:
    """The clients Passgate does not wrap itself: Redis (rate limits, login throttling) and
    SQLAlchemy (auth's engine, migrations). Both record statements without their values."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    redis, sqlalchemy = RedisInstrumentor(), SQLAlchemyInstrumentor()
    if not redis.is_instrumented_by_opentelemetry:
        redis.instrument(tracer_provider=provider)
    if not sqlalchemy.is_instrumented_by_opentelemetry:
        # The instrumentation declares SQLAlchemy < 2.1; the engine and cursor events it
        # listens to are unchanged in 2.1 (tests/observability/test_traces.py sees its spans).
        sqlalchemy.instrument(tracer_provider=provider, skip_dep_check=True)


# -- the server span ----------------------------------------------------------------------


def remote_parent(trace_context: TraceContext) -> Context:
    """The OpenTelemetry context of the caller's span, or an empty one (a new trace)."""
    if trace_context.parent_id is None:
        return Context()
    parent = SpanContext(
        int(trace_context.trace_id, 16),
        int(trace_context.parent_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(trace_context.flags, 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def as_trace_context(span: trace.Span, parent_id: str | None) -> TraceContext:
    """`span` as the TraceContext the rest of the process uses (logs, traceparent)."""
    context = span.get_span_context()
    return TraceContext(
        trace.format_trace_id(context.trace_id),
        trace.format_span_id(context.span_id),
        parent_id,
        "01" if context.trace_flags.sampled else "00",
    )


def server_span_middleware(tracer: Tracer) -> Any:
    """One SERVER span a request, named and labelled by the HTTP semantic conventions.

    Never recorded: the query string (it may carry secrets), headers, bodies. The path is
    recorded as routed (`url.path`), the route template as `http.route`.
    """

    @web.middleware
    async def server_span(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        route = route_label(request)
        if route in UNTRACED_ROUTES:
            return await handler(request)
        caller = request[TRACE]
        method = request.method
        span = tracer.start_span(
            method if route == UNMATCHED_ROUTE else f"{method} {route}",
            context=remote_parent(caller),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": request.path,
                "url.scheme": request.scheme,
                "network.protocol.version": f"{request.version.major}.{request.version.minor}",
                "client.address": request.remote or "",
            },
        )
        own = request[TRACE] = as_trace_context(span, caller.parent_id)
        trace_id_var.set(own.trace_id)
        token = otel_context.attach(trace.set_span_in_context(span))
        started = time.perf_counter()
        status, error_type = 500, None  # 500: what a request cut off mid-way counts as
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            error_type = "cancelled"
            raise
        except Problem as problem:  # an answer the code chose: its status says it all
            status = problem.status
            raise
        except Exception as exc:  # rendered as a 500 by the edge
            error_type = type(exc).__qualname__
            raise
        finally:
            otel_context.detach(token)
            span.set_attribute("http.response.status_code", status)
            # A server span's 4xx is the caller's error, not ours (semantic conventions).
            if status >= 500:
                span.set_attribute("error.type", error_type or str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            if own.flags == "01":
                request.app[HTTP_METRICS].exemplar(
                    request, status, time.perf_counter() - started, own.trace_id
                )

    return server_span

