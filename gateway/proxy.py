"""Forwarding to upstream pools: round robin, ejection, readiness, one retry, streaming.

- Each upstream is a pool of replicas used in turn. A replica that fails to connect
  `eject_after` times in a row leaves the rotation for `eject_seconds`, then gets one
  more chance. With no replica left the answer is 503 at once, without trying.
- Every replica's /readyz is probed every `health_interval` seconds; an unready one (a
  draining process, one whose database is gone) gets no new requests while a ready one
  is left. When none is ready, the not-ejected ones are used anyway (Envoy's "panic
  mode"), so callers get the backends' own 503 answers rather than the gateway's.
- One retry, on another replica: after a connect failure for any method (nothing left
  the gateway, and the body was not read yet); after the connection broke before an
  answer only for safe methods without a body (GET, HEAD: RFC 9110 section 9.2.1), which
  cannot change anything when sent twice. A request with side effects that reached a
  backend is never sent again: a client retries it, with an Idempotency-Key.
- No replica reachable: 503 with Retry-After. A replica that broke off: 502.
- The request body is streamed with the route's size limit counted as it flows (413);
  aiohttp's own client_max_size does not apply to a streamed body.
- The route's timeout bounds the whole exchange: 504 when it runs out before the
  response starts, 408 when the client's own body had not finished arriving by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from aiohttp import web
from yarl import URL

from common.errors import Problem
from common.keys import REQUEST_ID, TRACE
from gateway.headers import ForwardedHeaders, response_headers, upstream_request_headers
from gateway.metrics import GatewayMetrics
from gateway.routes import RouteConfig, UpstreamConfig

_LOGGER = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD"})
BUFFERED_RESPONSE_MAX = 256 * 1024  # smaller bodies are read whole: one write, no chunking
STREAM_CHUNK = 64 * 1024
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# The replica closed or reset the connection before its answer began.
_BROKEN_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
HEALTH_TIMEOUT_SECONDS = 1.0


class Replica:
    __slots__ = ("url", "failures", "ejected_until", "ready")

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures = 0
        self.ejected_until = 0.0
        self.ready = True  # until a readiness probe says otherwise


class UpstreamPool:
    """The replicas of one upstream, in rotation unless ejected."""

    def __init__(
        self, config: UpstreamConfig, *, clock: Callable[[], float], metrics: GatewayMetrics
    ) -> None:
        self.name = config.name
        self.config = config
        self.replicas = [Replica(url) for url in config.replicas]
        self._clock = clock
        self._next = 0
        self._ejections = metrics.upstream_ejections.labels(config.name)
        self.retries = metrics.upstream_retries.labels(config.name)
        self._metric = metrics.upstream_duration
        self._duration = {
            outcome: metrics.upstream_duration.labels(config.name, outcome)
            for outcome in ("1xx", "2xx", "3xx", "4xx", "5xx", "connect_error", "broken", "timeout")
        }
        metrics.upstream_healthy.labels(config.name).set_function(self.healthy_count)

    def healthy_count(self) -> int:
        now = self._clock()
        return sum(1 for r in self.replicas if r.ready and r.ejected_until <= now)

    def pick(self, exclude: Replica | None = None) -> Replica | None:
        """The next ready replica in rotation that is not ejected (nor `exclude`); failing
        that the next one not ejected, ready or not; None when every one is ejected."""
        now = self._clock()
        count = len(self.replicas)
        fallback: int | None = None
        for offset in range(count):
            index = (self._next + offset) % count
            replica = self.replicas[index]
            if replica is exclude or replica.ejected_until > now:
                continue
            if replica.ready:
                self._next = (index + 1) % count
                return replica
            if fallback is None:
                fallback = index
        if fallback is None:
            return None
        self._next = (fallback + 1) % count
        return self.replicas[fallback]

    async def watch_readiness(self, session: aiohttp.ClientSession) -> None:
        """Probe every replica's /readyz forever, every health_interval seconds."""
        timeout = aiohttp.ClientTimeout(total=min(HEALTH_TIMEOUT_SECONDS, self.config.health_interval))
        while True:
            await asyncio.gather(*(self._probe(session, r, timeout) for r in self.replicas))
            await asyncio.sleep(self.config.health_interval)

    async def _probe(
        self, session: aiohttp.ClientSession, replica: Replica, timeout: aiohttp.ClientTimeout
    ) -> None:
        try:
            async with session.get(f"{replica.url}/readyz", timeout=timeout) as response:
                ready = response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ready = False
        if ready != replica.ready:
            _LOGGER.info(
                "upstream %s replica %s is %s", self.name, replica.url, "ready" if ready else "unready"
            )
            replica.ready = ready

    def connect_failed(self, replica: Replica) -> None:
        replica.failures += 1
        if replica.failures >= self.config.eject_after:
            replica.ejected_until = self._clock() + self.config.eject_seconds
            self._ejections.inc()
            _LOGGER.warning(
                "upstream %s replica %s ejected for %ss after %d connect failures",
                self.name, replica.url, self.config.eject_seconds, replica.failures,
            )

    def connected(self, replica: Replica) -> None:
        replica.failures = 0

    def observe(self, outcome: str, seconds: float) -> None:
        child = self._duration.get(outcome)
        if child is None:  # a status class outside 1xx-5xx
            child = self._duration[outcome] = self._metric.labels(self.name, outcome)
        child.observe(seconds)


class BodyTooLarge(Exception):
    pass


class _StreamedBody:
    """The client's body, passed on chunk by chunk while its size is counted."""

    def __init__(self, request: web.Request, limit: int) -> None:
        self._request = request
        self._limit = limit
        self.started = False
        self.finished = False
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        total = 0
        async for chunk in self._request.content.iter_chunked(STREAM_CHUNK):
            total += len(chunk)
            if total > self._limit:
                self.too_large = True
                raise BodyTooLarge()
            yield chunk
        self.finished = True

    @property
    def incomplete(self) -> bool:
        """Passing on began but the client has not sent all of it yet."""
        return self.started and not self.finished


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the request body exceeds {limit} bytes", kind="body-too-large")


class Proxy:
    """Sends a routed request to its upstream pool and relays the answer."""

    def __init__(self, *, forwarded: ForwardedHeaders) -> None:
        self.forwarded = forwarded
        self.session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    def _timeout(self, route: RouteConfig, pool: UpstreamPool) -> aiohttp.ClientTimeout:
        key = (route.timeout, pool.config.connect_timeout)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=route.timeout, connect=min(route.timeout, pool.config.connect_timeout)
            )
            self._timeouts[key] = timeout
        return timeout

    async def forward(
        self,
        request: web.Request,
        route: RouteConfig,
        pool: UpstreamPool,
        identity_headers: Mapping[str, str],
        forwarded_headers: Mapping[str, str],
        extra_response_headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        assert self.session is not None, "the client session starts with the app"
        replica = pool.pick()
        if replica is None:
            raise Problem(
                503,
                f"no healthy replica of upstream {pool.name!r}; retry shortly",
                kind="upstream-unavailable",
                headers={"Retry-After": str(max(1, int(pool.config.eject_seconds)))},
            )
        headers = upstream_request_headers(request, forward_basic_auth=route.forward_basic_auth)
        headers.update(identity_headers)
        headers.update(forwarded_headers)
        headers["X-Request-Id"] = request[REQUEST_ID]
        headers["traceparent"] = request[TRACE].traceparent()
        body: _StreamedBody | None = None
        if request.body_exists:
            length = request.content_length
            if length is not None:
                if length > route.max_body_bytes:
                    raise _too_large(route.max_body_bytes)
                headers["Content-Length"] = str(length)
            body = _StreamedBody(request, route.max_body_bytes)
        # The upstream path is the raw (still encoded) path the router matched, never the
        # absolute-form target's authority: only the chosen replica decides where it goes.
        target = request.rel_url.raw_path
        query = request.rel_url.raw_query_string
        if query:
            target = f"{target}?{query}"
        timeout = self._timeout(route, pool)
        retried = False
        while True:
            started = time.perf_counter()
            try:
                upstream = await self.session.request(
                    request.method,
                    URL(replica.url + target, encoded=True),
                    headers=headers,
                    data=body.chunks() if body is not None else None,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except _CONNECT_ERRORS:
                pool.observe("connect_error", time.perf_counter() - started)
                pool.connect_failed(replica)
                # Nothing left the gateway, whatever the method.
                unsent = body is None or not body.started
                other = pool.pick(exclude=replica) if unsent and not retried else None
                if other is None:
                    raise Problem(
                        503,
                        f"no replica of upstream {pool.name!r} could be reached; retry shortly",
                        kind="upstream-unavailable",
                        headers={"Retry-After": "1"},
                    ) from None
            except (BodyTooLarge, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                elapsed = time.perf_counter() - started
                if body is not None and body.too_large:
                    raise _too_large(route.max_body_bytes) from None
                if isinstance(exc, asyncio.TimeoutError):
                    pool.observe("timeout", elapsed)
                    if body is not None and body.incomplete:
                        # The client's body was still arriving: its fault, not the upstream's
                        # (RFC 9110 section 15.5.9); a slow POST never turns into a 5xx.
                        raise Problem(
                            408,
                            f"the request body did not arrive within {route.timeout:g} s",
                            kind="request-timeout",
                        ) from None
                    raise Problem(
                        504, f"upstream {pool.name!r} did not answer in time", kind="upstream-timeout"
                    ) from None
                pool.observe("broken", elapsed)
                # Sent, then the connection broke: only a safe request may go again.
                safe = request.method in SAFE_METHODS and body is None
                broken = isinstance(exc, _BROKEN_ERRORS)
                other = pool.pick(exclude=replica) if broken and safe and not retried else None
                if other is None:
                    raise Problem(
                        502, f"upstream {pool.name!r} failed to answer", kind="upstream-failed"
                    ) from None
            else:
                break
            retried = True
            pool.retries.inc()
            replica = other
        pool.connected(replica)
        pool.observe(f"{upstream.status // 100}xx", time.perf_counter() - started)
        try:
            return await self._relay(request, upstream, pool, extra_response_headers)
        finally:
            upstream.release()

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        pool: UpstreamPool,
        extra: Mapping[str, str] | None,
    ) -> web.StreamResponse:
        headers = response_headers(upstream.headers)
        if extra:
            headers.update(extra)
        status = upstream.status
        length = upstream.content_length
        if request.method == "HEAD" or status in (204, 304) or status < 200:
            response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
            if length is not None and request.method == "HEAD":
                response.content_length = length
            return response
        if length is not None and length <= BUFFERED_RESPONSE_MAX:
            try:
                data = await upstream.read()
            except asyncio.TimeoutError:
                raise Problem(504, f"upstream {pool.name!r} did not answer in time",
                              kind="upstream-timeout") from None
            except aiohttp.ClientError:
                raise Problem(502, f"upstream {pool.name!r} broke off its answer",
                              kind="upstream-failed") from None
            return web.Response(status=status, reason=upstream.reason, body=data, headers=headers)
        response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(STREAM_CHUNK):
                await response.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Too late for an error status: cut the connection so the client sees a failure.
            _LOGGER.warning("upstream %s broke off a streamed answer: %s", pool.name, type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
