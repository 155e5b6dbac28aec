"""The gateway's own spans, for the work no instrumentation library sees.

Installed by `instrument` only when tracing is on (common.cli.serve decides once, at
start); with tracing off none of this runs and the request path is unchanged.

  verify token   INTERNAL, under the server span: `passgate.token.cache` hit or miss, and
                 on a refusal `error.type` = the refusal reason (the metric's label);
  fetch JWKS     INTERNAL: each key-set download (in the background, or for an unknown kid
                 under the request's verify span), with the key set's URL;
  rate limit     INTERNAL: the route and whether the request was allowed (the caller's
                 subject or address is never recorded); Redis's own span beneath it;
  upstream       CLIENT, one per attempt on the lean transport, so a retry shows as a
                 second span with `http.request.resend_count`. The traceparent sent with the
                 attempt names this span, so the backend's server span is its child.

The wrapped methods are the public steps those classes expose for it (Proxy.exchange,
TokenVerifier.verify and verify_signed, JwksClient.fetch, RateLimiter.take), replaced on the
instances this app made, at start: the hot path keeps its plain method calls when tracing
is off. Under a request that is not sampled they
make no span (the SDK would make a non-recording one for each, for nothing): the upstream
is sent the request's own traceparent, which carries the decision not to sample.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from common.telemetry import as_trace_context
from gateway.app_keys import JWKS, PROXY, RATE_LIMITER, VERIFIER
from gateway.verification import TokenError

# (id of the outgoing request, attempts so far): each request runs in its own task, so this
# counts the attempts of the request being handled.
_ATTEMPTS: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar(
    "upstream_attempts", default=(0, 0)
)


def instrument(app: web.Application, tracer: Tracer) -> None:
    """Wrap the upstream exchange now and the verifier, key set and rate limiter once the
    app has made them (they need its loop: cleanup contexts, which run before this hook)."""
    proxy = app[PROXY]
    proxy.exchange = traced_exchange(proxy.exchange, tracer)  # type: ignore[method-assign]

    async def wrap_started(app: web.Application) -> None:
        verifier, jwks, limiter = app[VERIFIER], app[JWKS], app[RATE_LIMITER]
        verifier.verify, verifier.verify_signed = traced_verify(  # type: ignore[method-assign]
            verifier.verify, verifier.verify_signed, tracer
        )
        jwks.fetch = traced_fetch(jwks.fetch, jwks.url, tracer)  # type: ignore[method-assign]
        limiter.take = traced_take(limiter.take, tracer)  # type: ignore[method-assign]

    app.on_startup.append(wrap_started)


def _fail(span: trace.Span, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))


def traced_exchange(exchange: Callable[..., Awaitable[Any]], tracer: Tracer) -> Any:
    """Proxy.exchange, one CLIENT span per attempt, its traceparent sent upstream."""
    addresses: dict[str, tuple[str, int]] = {}

    async def exchange_in_span(replica: Any, deadline: Any, outgoing: Any) -> Any:
        if not trace.get_current_span().is_recording():
            # Unsampled: the upstream gets the request's own traceparent.
            return await exchange(replica, deadline, outgoing)
        last, count = _ATTEMPTS.get()
        resend = count if last == id(outgoing) else 0
        _ATTEMPTS.set((id(outgoing), resend + 1))
        address = addresses.get(replica.url)
        if address is None:
            parts = urlsplit(replica.url)
            address = addresses[replica.url] = (parts.hostname or "", parts.port or 80)
        attributes: dict[str, Any] = {
            "http.request.method": outgoing.method,
            "server.address": address[0],
            "server.port": address[1],
            "url.full": f"{replica.url}{outgoing.path}",  # never the query string
        }
        if resend:
            attributes["http.request.resend_count"] = resend
        with tracer.start_as_current_span(
            outgoing.method, kind=SpanKind.CLIENT, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            traceparent = as_trace_context(span, None).traceparent()
            try:
                response = await exchange(replica, deadline, outgoing, traceparent)
            except BaseException as exc:
                _fail(span, type(exc).__qualname__)
                raise
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:  # a client span's 4xx is an error too (conventions)
                _fail(span, str(response.status))
            return response

    return exchange_in_span


def traced_verify(
    verify: Callable[[str], Awaitable[Any]],
    verify_signed: Callable[[str, float], Awaitable[Any]],
    tracer: Tracer,
) -> tuple[Any, Any]:
    """TokenVerifier.verify in a span; its signature check (a cache miss) marks the span."""

    async def verify_in_span(token: str) -> Any:
        if not trace.get_current_span().is_recording():
            return await verify(token)
        with tracer.start_as_current_span(
            "verify token", attributes={"passgate.token.cache": "hit"},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                return await verify(token)
            except TokenError as error:
                _fail(span, error.reason)  # the reason, never the token or its claims
                raise
            except Exception as exc:
                _fail(span, type(exc).__qualname__)
                raise

    async def verify_signed_marked(token: str, now: float) -> Any:
        trace.get_current_span().set_attribute("passgate.token.cache", "miss")
        return await verify_signed(token, now)

    return verify_in_span, verify_signed_marked


def traced_fetch(fetch: Callable[[], Awaitable[bool]], url: str, tracer: Tracer) -> Any:
    """JwksClient.fetch (one key-set download) in a span."""

    async def fetch_in_span() -> bool:
        with tracer.start_as_current_span("fetch JWKS", attributes={"url.full": url}) as span:
            fetched = await fetch()
            if not fetched:
                _fail(span, "jwks_unavailable")
            return fetched

    return fetch_in_span


def traced_take(take: Callable[[Any, str], Awaitable[Any]], tracer: Tracer) -> Any:
    """RateLimiter.take in a span, with the route and the decision."""

    async def take_in_span(route: Any, caller: str) -> Any:
        if not trace.get_current_span().is_recording():
            return await take(route, caller)
        with tracer.start_as_current_span(
            "rate limit", attributes={"passgate.route": route.name}
        ) as span:
            decision = await take(route, caller)
            span.set_attribute("passgate.rate_limit.allowed", decision.allowed)
            return decision

    return take_in_span
