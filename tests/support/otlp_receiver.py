"""An OTLP/HTTP trace receiver for tests: what a collector would receive, decoded.

No collector binary is packaged for this machine, so the tests run this instead: an aiohttp
app on a free loopback port, in a thread of its own (the processes under test export to it
while the test waits synchronously), that accepts POST /v1/traces with
application/x-protobuf, decodes the ExportTraceServiceRequest with opentelemetry-proto and
keeps every span, flattened, with its resource's attributes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from devstack.processes import free_port
from tests.support.polling import poll

PROTOBUF = "application/x-protobuf"
KINDS = {value: name.removeprefix("SPAN_KIND_") for name, value in SpanMessage.SpanKind.items()}
STATUS_CODES = {
    value: name.removeprefix("STATUS_CODE_") for name, value in Status.StatusCode.items()
}


@dataclasses.dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL ...
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]
    status: str  # UNSET, OK, ERROR
    resource: dict[str, Any]
    text: str  # the whole span as JSON text, for scanning

    @property
    def route(self) -> str | None:
        return self.attributes.get("http.route")


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    if field is None:
        return None
    if field == "array_value":
        return [_value(item) for item in value.array_value.values]
    if field == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, field)


def decode(body: bytes) -> list[ReceivedSpan]:
    """Every span of one export request."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=KINDS[span.kind],
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        status=STATUS_CODES[span.status.code],
                        resource=resource,
                        text=str(MessageToDict(span)),
                    )
                )
    return spans


class OtlpReceiver:
    """The received spans; `url` is what OTEL_EXPORTER_OTLP_ENDPOINT names."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.refused: list[str] = []  # what was not a valid export, and why

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        if request.content_type != PROTOBUF:
            self.refused.append(f"content type {request.content_type}")
            return web.Response(status=415)
        body = await request.read()
        try:
            spans = decode(body)
        except Exception as exc:  # noqa: BLE001 - an undecodable export is a finding
            self.refused.append(f"undecodable: {exc}")
            return web.Response(status=400)
        with self._lock:
            self.requests += 1
            self._spans.extend(spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF
        )

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span.trace_id == trace_id]

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], what: str, timeout: float = 20
    ) -> list[ReceivedSpan]:
        """The spans received, once `found` says they are all there."""

        def complete() -> list[ReceivedSpan] | None:
            spans = self.spans()
            return spans if found(spans) else None

        return poll(complete, timeout=timeout, what=what)


@contextmanager
def running_receiver() -> Iterator[OtlpReceiver]:
    """A receiver serving on a free port until the block ends."""
    receiver = OtlpReceiver(free_port())
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner = web.AppRunner(receiver.app(), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(receiver.url.rsplit(":", 1)[1])).start()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="otlp-receiver", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the OTLP receiver did not start")
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
