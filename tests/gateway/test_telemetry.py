"""The gateway's own spans (gateway.telemetry): the token check, rate limit, JWKS fetch, and
one span per upstream attempt whose id the upstream is sent as its parent."""

from __future__ import annotations

from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common.telemetry import Tracing, build_tracing
from gateway.telemetry import instrument
from tests.support.gateway_under_test import received_headers

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def traced() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = build_tracing("gateway", ENDPOINT, exporter=lambda: exporter)
    assert tracing is not None
    return tracing, exporter


def hooks(tracing: Tracing):  # type: ignore[no-untyped-def]
    def prepare(app: web.Application) -> None:
        tracing.install(app)
        instrument(app, tracing.tracer)

    return prepare


def finished(tracing: Tracing, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    tracing.provider.force_flush()
    return list(exporter.get_finished_spans())


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_retried_request_shows_both_attempts_and_the_upstream_continues_the_second(
    make_gateway,
) -> None:
    tracing, exporter = traced()
    stack = await make_gateway(replicas=2, prepare=hooks(tracing))
    await stack.backends["users-0"].close()
    headers = stack.bearer()
    answers = [await stack.client.get("/users/me", headers=headers) for _ in range(5)]
    assert [answer.status for answer in answers] == [200] * 5
    spans = finished(tracing, exporter)
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    retried = [
        s for s in servers if [c.kind for c in children(spans, s)].count(SpanKind.CLIENT) == 2
    ]
    assert retried, "no request was retried"
    first, second = sorted(
        (c for c in children(spans, retried[0]) if c.kind is SpanKind.CLIENT),
        key=lambda span: span.start_time,
    )
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "ConnectError"
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert second.status.status_code is StatusCode.UNSET
    # The answer of the retried request: users-1 was sent the second attempt as its parent.
    answer = answers[servers.index(retried[0])]
    sent = received_headers(await answer.json())["traceparent"]
    trace_id = f"{second.context.trace_id:032x}"
    assert sent == f"00-{trace_id}-{second.context.span_id:016x}-01"
    # The token: checked on the first request, from the cache after.
    checks = [s for s in spans if s.name == "verify token"]
    assert [s.attributes["passgate.token.cache"] for s in checks] == ["miss"] + ["hit"] * 4
    tracing.provider.shutdown()


async def test_a_refused_token_the_rate_limit_and_the_key_set_fetch(make_gateway) -> None:
    tracing, exporter = traced()
    stack = await make_gateway(prepare=hooks(tracing))
    refused = await stack.client.get("/users/me", headers={"Authorization": "Bearer a.b.c"})
    assert refused.status == 401
    password = "a password no span may hold"
    login = await stack.client.post("/auth/login", json={"username": "u", "password": password})
    assert login.status == 201  # what the recording backend answers a POST
    assert (await stack.client.get("/users/me", headers=stack.bearer())).status == 200
    spans = finished(tracing, exporter)
    check, _ = [s for s in spans if s.name == "verify token"]
    assert check.status.status_code is StatusCode.ERROR
    assert check.attributes["error.type"] == "malformed"
    (limit,) = [s for s in spans if s.name == "rate limit"]
    assert limit.attributes["passgate.route"] == "users-me-read"
    assert limit.attributes["passgate.rate_limit.allowed"] is True
    assert "ip:" not in str(dict(limit.attributes))  # the caller is never recorded
    fetches = [s for s in spans if s.name == "fetch JWKS"]
    assert fetches and fetches[0].attributes["url.full"] == stack.jwks.url
    assert not [s.name for s in spans if password in str(dict(s.attributes))]
    tracing.provider.shutdown()


async def test_an_unsampled_request_makes_no_span_and_passes_its_decision_upstream(
    make_gateway,
) -> None:
    tracing, exporter = traced()
    stack = await make_gateway(prepare=hooks(tracing))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = f"00-{trace_id}-00f067aa0ba902b7-00"
    answer = await stack.client.get("/users/me", headers={**stack.bearer(), "traceparent": caller})
    assert answer.status == 200
    sent = received_headers(await answer.json())["traceparent"]
    assert sent.startswith(f"00-{trace_id}-") and sent.endswith("-00")
    assert [s.name for s in finished(tracing, exporter) if s.name != "fetch JWKS"] == []
    tracing.provider.shutdown()


async def test_the_shared_rate_limit_shows_its_redis_call_without_the_callers_key(
    make_gateway, redis_url
) -> None:
    """Redis's own instrumentation (what common.telemetry installs when tracing is on),
    beneath the gateway's rate-limit span; its statements are sanitized."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    tracing, exporter = traced()
    redis = RedisInstrumentor()
    redis.instrument(tracer_provider=tracing.provider)
    try:
        stack = await make_gateway(prepare=hooks(tracing), redis_url=redis_url)
        answer = await stack.client.get("/users/me", headers=stack.bearer(sub="redis-traced-user"))
        assert answer.status == 200
    finally:
        redis.uninstrument()
    spans = finished(tracing, exporter)
    (limit,) = [s for s in spans if s.name == "rate limit"]
    below = children(spans, limit)
    assert below and all(s.attributes["db.system"] == "redis" for s in below), below
    assert not [s.name for s in spans if "redis-traced-user" in str(dict(s.attributes))]
    tracing.provider.shutdown()
