"""common.telemetry: the OTEL_* switch, the server span, and what a down collector costs.

The spans here go to the SDK's in-memory exporter or to an OTLP exporter aimed at a closed
port; the real receiver and the four real processes are in tests/observability.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.app_keys import REGISTRY
from common.errors import Problem
from common.settings import SettingsError
from common.telemetry import Tracing, build_tracing, tracing_wanted

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask(
    env: dict[str, str], wanted: bool
) -> None:
    assert tracing_wanted(env) is wanted
    assert (build_tracing("test", env, exporter=InMemorySpanExporter) is not None) is wanted


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "jaeger"},
        {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {**ENDPOINT, "OTEL_BSP_MAX_QUEUE_SIZE": "lots"},
    ],
)
def test_a_setting_it_cannot_honour_refuses_to_start(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        build_tracing("test", env, exporter=InMemorySpanExporter)


def test_the_service_name_is_the_components_unless_otel_service_name_says() -> None:
    exporter = InMemorySpanExporter()
    renamed = {**ENDPOINT, "OTEL_SERVICE_NAME": "users-eu"}
    for env, name in ((ENDPOINT, "users"), (renamed, "users-eu")):
        tracing = build_tracing("users", env, exporter=lambda: exporter)
        assert tracing is not None
        assert tracing.provider.resource.attributes["service.name"] == name
        tracing.provider.shutdown()


def _traced_app(tracing: Tracing) -> web.Application:
    app = make_base_app("test", registry=CollectorRegistry())

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    async def busy(request: web.Request) -> web.Response:
        raise Problem(503, "try later")

    async def item(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["item_id"]})

    app.router.add_get("/boom", boom)
    app.router.add_get("/busy", busy)
    app.router.add_get("/items/{item_id}", item)
    tracing.install(app)
    return app


async def test_server_spans_follow_the_http_conventions_and_never_hold_the_query(
    aiohttp_client,
) -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing("test", ENDPOINT, exporter=lambda: exporter)
    assert tracing is not None
    client = await aiohttp_client(_traced_app(tracing))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = f"00-{trace_id}-00f067aa0ba902b7-01"
    answered = await client.get("/items/42?token=s3cr3t", headers={"traceparent": caller})
    assert answered.status == 200
    boom = await client.get("/boom")
    assert boom.status == 500
    assert (await client.get("/busy")).status == 503
    assert (await client.get("/nowhere")).status == 404
    assert (await client.get("/healthz")).status == 200  # probes make no spans
    tracing.provider.force_flush()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"GET /items/{item_id}", "GET /boom", "GET /busy", "GET"}

    item = spans["GET /items/{item_id}"]
    assert f"{item.context.trace_id:032x}" == trace_id
    assert f"{item.parent.span_id:016x}" == "00f067aa0ba902b7" and item.parent.is_remote
    assert dict(item.attributes) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "url.path": "/items/42",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
        "http.response.status_code": 200,
    }
    assert item.status.status_code is StatusCode.UNSET
    assert "s3cr3t" not in json.dumps(dict(item.attributes))

    crash = spans["GET /boom"]
    assert crash.status.status_code is StatusCode.ERROR
    assert crash.attributes["error.type"] == "RuntimeError"
    assert crash.attributes["http.response.status_code"] == 500
    assert crash.parent is None  # no traceparent: a trace of its own
    # The problem body names the span's trace, as the log lines do.
    assert (await boom.json(content_type=None))["trace_id"] == f"{crash.context.trace_id:032x}"
    assert spans["GET /busy"].attributes["error.type"] == "503"
    assert spans["GET"].status.status_code is StatusCode.UNSET  # a 404 is the caller's error
    tracing.provider.shutdown()


async def test_an_unsampled_caller_gets_no_span_and_passes_its_decision_on(aiohttp_client) -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing("test", ENDPOINT, exporter=lambda: exporter)
    assert tracing is not None
    app = _traced_app(tracing)
    seen = []

    async def echo(request: web.Request) -> web.Response:
        from common.app_keys import TRACE

        seen.append(request[TRACE].traceparent())
        return web.Response(text="ok")

    app.router.add_get("/echo", echo)
    client = await aiohttp_client(app)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await client.get("/echo", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"})
    tracing.provider.force_flush()
    assert exporter.get_finished_spans() == ()
    (sent,) = seen
    assert sent.startswith(f"00-{trace_id}-") and sent.endswith("-00")
    tracing.provider.shutdown()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        sample.labels.get("reason", ""): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    }


async def test_a_down_collector_costs_only_dropped_spans_counted(aiohttp_client) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1/traces"
    env = {**ENDPOINT, "OTEL_BSP_MAX_QUEUE_SIZE": "4"}
    tracing = build_tracing("test", env, exporter=lambda: OTLPSpanExporter(endpoint=url, timeout=1))
    assert tracing is not None
    app = _traced_app(tracing)
    client = await aiohttp_client(app)
    for number in range(10):
        response = await client.get(f"/items/{number}")
        assert response.status == 200  # the requests are answered whatever the collector does
    tracing.provider.force_flush()
    dropped = _samples(app[REGISTRY], "tracing_spans_dropped_total")
    # Each span was refused by the dead collector or found the queue full: none is lost
    # uncounted, none exported.
    assert dropped["export_failed"] >= 1 and sum(dropped.values()) == 10, dropped
    assert _samples(app[REGISTRY], "tracing_spans_exported_total") == {"": 0.0}
    tracing.provider.shutdown()


class _HangingCollector(SpanExporter):
    """An exporter whose collector takes the connection and never answers until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans) -> SpanExportResult:  # type: ignore[no-untyped-def]
        self.release.wait(10)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.release.set()


async def test_spans_beyond_the_queue_are_dropped_while_a_collector_hangs(aiohttp_client) -> None:
    collector = _HangingCollector()
    env = {**ENDPOINT, "OTEL_BSP_MAX_QUEUE_SIZE": "3"}
    tracing = build_tracing("test", env, exporter=lambda: collector)
    assert tracing is not None
    app = _traced_app(tracing)
    client = await aiohttp_client(app)
    for number in range(10):
        assert (await client.get(f"/items/{number}")).status == 200
    # Three spans are in the hanging export; the other seven found the queue full.
    assert _samples(app[REGISTRY], "tracing_spans_dropped_total") == {
        "queue_full": 7.0, "export_failed": 0.0
    }
    collector.release.set()
    tracing.provider.force_flush()
    assert _samples(app[REGISTRY], "tracing_spans_dropped_total") == {
        "queue_full": 7.0, "export_failed": 3.0
    }
    tracing.provider.shutdown()
