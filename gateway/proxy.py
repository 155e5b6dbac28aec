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
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from common.app_keys import TRACE
from common.timestamps import EpochClock
from common.errors import Problem
from gateway.headers import ForwardedHeaders, response_headers
from gateway.metrics import GatewayMetrics
from gateway.routes import RouteConfig, UpstreamConfig
from gateway.upstream import ExchangeBrokenError, ConnectError, Connection, ConnectionPool, Response
from gateway.verification import Verified

_LOGGER = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD"})
BUFFERED_RESPONSE_MAX = 256 * 1024  # smaller bodies are read whole: one write, no chunking
STREAM_CHUNK = 64 * 1024
HEALTH_TIMEOUT_SECONDS = 1.0


class Replica:
    """One address of an upstream, with its health and its keep-alive connections."""

    __slots__ = ("url", "failures", "ejected_until", "ready", "host_header", "_address", "_connections",
                 "_connect_timeout")

    def __init__(self, url: str, *, connect_timeout: float = 2.0, host_header: str | None = None) -> None:
        self.url = url
        self.failures = 0
        self.ejected_until = 0.0
        self.ready = True  # until a readiness probe says otherwise
        parts = urlsplit(url)
        assert parts.hostname is not None, "validated when the routes file loads"
        tls = parts.scheme == "https"
        self._address = (parts.hostname, parts.port or (443 if tls else 80), tls)
        # A discovered replica is an address, but it is asked for the service by name.
        self.host_header = host_header or parts.netloc
        self._connect_timeout = connect_timeout
        self._connections: ConnectionPool | None = None

    @property
    def connections(self) -> ConnectionPool:
        """The keep-alive connections to this replica, made in the running loop on first use."""
        if self._connections is None:
            host, port, tls = self._address
            self._connections = ConnectionPool(
                host, port, tls=tls, connect_timeout=self._connect_timeout
            )
        return self._connections

    def close_idle(self, older_than: float | None = None) -> None:
        if self._connections is not None:
            self._connections.close_idle(older_than)

    def close(self) -> None:
        """Close every connection to this replica: it is gone."""
        if self._connections is not None:
            self._connections.close()

    def retire(self) -> None:
        """The replica left the upstream: close its idle connections now, and each busy one
        as soon as its exchange is over, so a request in flight still gets its answer."""
        if self._connections is not None:
            self._connections.retire()


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """Every A and AAAA address of `host`, from the event loop's resolver (getaddrinfo in
    a thread, or uvloop's): what a headless Service's name answers with, one per ready pod."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


class UpstreamPool:
    """The replicas of one upstream, in rotation unless ejected.

    With static discovery the replicas are the configured URLs. With DNS discovery (a
    Kubernetes headless Service, Envoy's STRICT_DNS) each configured URL names a host whose
    every address is a replica: the names are resolved again every `resolve_interval`
    seconds and at once after a connect failure. An address that appears is used from the
    next request; one that goes gets no new requests and its connections are closed once
    their exchanges end. A failed resolution keeps the replicas last known (a DNS hiccup
    must not empty the pool); an empty answer is rare (NXDOMAIN fails) and empties it.
    """

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        clock: EpochClock,
        metrics: GatewayMetrics,
        resolver: Resolver = resolve_addresses,
    ) -> None:
        self.name = config.name
        self.config = config
        self.replicas = (
            [] if config.discovery == "dns"
            else [Replica(url, connect_timeout=config.connect_timeout) for url in config.replicas]
        )
        self._resolver = resolver
        self._resolve_now = asyncio.Event()
        self._clock = clock
        self._next = 0
        self._ejections = metrics.upstream_ejections.labels(config.name)
        self.retries = metrics.upstream_retries.labels(config.name)
        self._duration = metrics.upstream_duration
        metrics.upstream_healthy.labels(config.name).set_function(self.healthy_count)

    async def resolve(self) -> None:
        """Resolve every configured name once and make its addresses the replica set."""
        found: dict[str, str] = {}  # replica URL -> the Host it is asked for
        for url in self.config.replicas:
            parts = urlsplit(url)
            assert parts.hostname is not None
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                addresses = await self._resolver(parts.hostname, port)
            except (OSError, UnicodeError) as exc:
                _LOGGER.warning("upstream %s: resolving %s failed (%s); keeping %d replicas",
                                self.name, parts.hostname, type(exc).__name__, len(self.replicas))
                return
            for address in addresses:
                host = f"[{address}]" if ":" in address else address
                found[f"{parts.scheme}://{host}:{port}"] = parts.netloc
        self.set_replicas(found)

    def set_replicas(self, urls: dict[str, str]) -> None:
        """Make `urls` (replica URL -> Host header) the replica set, keeping the state of
        replicas that stay and retiring the ones that go."""
        current = {replica.url: replica for replica in self.replicas}
        if current.keys() == urls.keys():
            return
        kept = []
        for url, host_header in urls.items():
            replica = current.pop(url, None)
            if replica is None:
                replica = Replica(url, connect_timeout=self.config.connect_timeout, host_header=host_header)
                _LOGGER.info("upstream %s: replica %s added", self.name, url)
            kept.append(replica)
        for url, gone in current.items():
            _LOGGER.info("upstream %s: replica %s removed", self.name, url)
            gone.retire()
        self.replicas = kept
        self._next = self._next % len(kept) if kept else 0

    async def watch_dns(self) -> None:
        """Resolve every resolve_interval seconds, or at once when a connect failed."""
        while True:
            await self.resolve()
            try:
                await asyncio.wait_for(self._resolve_now.wait(), self.config.resolve_interval)
            except asyncio.TimeoutError:
                pass
            self._resolve_now.clear()

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
            for replica in self.replicas:
                replica.close_idle()
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
        self._resolve_now.set()  # the pod may be gone: look again rather than wait
        replica.failures += 1
        if replica.failures >= self.config.eject_after:
            replica.ejected_until = self._clock() + self.config.eject_seconds
            replica.close_idle(0)  # kept-alive connections to a failing replica are suspect too
            self._ejections.inc()
            _LOGGER.warning(
                "upstream %s replica %s ejected for %ss after %d connect failures",
                self.name, replica.url, self.config.eject_seconds, replica.failures,
            )

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()

    def connected(self, replica: Replica) -> None:
        replica.failures = 0

    def observe(self, outcome: str, seconds: float) -> None:
        self._duration.observe((self.name, outcome), seconds)


class BodyTooLargeError(Exception):
    pass


class _StreamedBody:
    """The client's body, passed on chunk by chunk while its size is counted."""

    __slots__ = ("_request", "_limit", "started", "finished", "too_large")

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
                raise BodyTooLargeError()
            yield chunk
        self.finished = True

    @property
    def incomplete(self) -> bool:
        """Passing on began but the client has not sent all of it yet."""
        return self.started and not self.finished


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the request body exceeds {limit} bytes", kind="body-too-large")


def _unavailable(pool: UpstreamPool, detail: str, retry_after: int) -> Problem:
    return Problem(503, detail, kind="upstream-unavailable", headers={"Retry-After": str(retry_after)})


def _timed_out(pool: UpstreamPool) -> Problem:
    return Problem(504, f"upstream {pool.name!r} did not answer in time", kind="upstream-timeout")


def _failed(pool: UpstreamPool, detail: str = "failed to answer") -> Problem:
    return Problem(502, f"upstream {pool.name!r} {detail}", kind="upstream-failed")


class _Outgoing:
    """What is sent upstream for one request, whichever replica takes it."""

    __slots__ = ("method", "path", "traceparent", "body", "chunked", "max_body_bytes", "timeout",
                 "_line", "_tail")

    def __init__(self, request: web.Request, route: RouteConfig, head_fields: str) -> None:
        self.method = request.method
        self.traceparent = request[TRACE].traceparent()  # with tracing on, each attempt's own
        self.max_body_bytes = route.max_body_bytes
        self.timeout = route.timeout
        self.body: _StreamedBody | None = None
        self.chunked = False
        framing = ""
        if request.body_exists:
            length = request.content_length
            if length is not None:
                if length > route.max_body_bytes:
                    raise _too_large(route.max_body_bytes)
                framing = f"Content-Length: {length}\r\n"
            else:
                framing = "Transfer-Encoding: chunked\r\n"
                self.chunked = True
            self.body = _StreamedBody(request, route.max_body_bytes)
        # The upstream path is the raw (still encoded) path the router matched, never the
        # absolute-form target's authority: only the chosen replica decides where it goes.
        target = self.path = request.rel_url.raw_path
        query = request.rel_url.raw_query_string
        if query:
            target = f"{target}?{query}"
        self._line = f"{self.method} {target} HTTP/1.1\r\n"
        self._tail = f"{head_fields}{framing}\r\n"

    def head(self, replica: Replica, traceparent: str | None = None) -> bytes:
        """The request head for `replica`, which names the Host it is asked for, and the
        span the upstream continues (the request's, or the attempt's when traced)."""
        return (
            f"{self._line}Host: {replica.host_header}\r\n"
            f"traceparent: {traceparent or self.traceparent}\r\n{self._tail}"
        ).encode("utf-8", "surrogateescape")


class Deadline:
    """The route's timeout for one exchange: aborts the connection in use when it passes."""

    __slots__ = ("_handle", "connection", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.connection: Connection | None = None
        self.expired = False
        self._handle = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self.connection is not None:
            self.connection.abort(asyncio.TimeoutError())

    def cancel(self) -> None:
        self._handle.cancel()


class Proxy:
    """Sends a routed request to its upstream pool and relays the answer.

    With tracing on, gateway.telemetry wraps this instance's `exchange` (one attempt) in a
    span at start; with it off nothing is wrapped.
    """

    def __init__(self, *, forwarded: ForwardedHeaders) -> None:
        self.forwarded = forwarded

    async def forward(
        self,
        request: web.Request,
        route: RouteConfig,
        pool: UpstreamPool,
        head_fields: str,
        extra_response_headers: Mapping[str, str] | None = None,
        verified: Verified | None = None,
    ) -> web.StreamResponse:
        """Forward `request` with `head_fields` (every header line but Host and the body's
        framing, each ending in CRLF) and relay the answer, with `extra_response_headers`.
        (`verified` is the pipeline's Forward signature: an exchange ends with its request,
        so the token's lifetime does not concern it.)"""
        replica = pool.pick()
        if replica is None:
            raise _unavailable(
                pool, f"no healthy replica of upstream {pool.name!r}; retry shortly",
                max(1, int(pool.config.eject_seconds)),
            )
        outgoing = _Outgoing(request, route, head_fields)
        deadline = Deadline(asyncio.get_running_loop(), route.timeout)
        try:
            upstream = await self._send(pool, replica, outgoing, deadline)
            try:
                return await self._relay(request, upstream, pool, deadline, extra_response_headers)
            finally:
                upstream.release()
        finally:
            deadline.cancel()

    async def _send(
        self, pool: UpstreamPool, replica: Replica, outgoing: _Outgoing, deadline: Deadline
    ) -> Response:
        """The answer's head from `replica`, or from one other replica when the first
        attempt failed in a way the retry rules allow; otherwise the Problem to answer."""
        retried = False
        while True:
            started = time.perf_counter()
            try:
                upstream = await self.exchange(replica, deadline, outgoing)
            except ConnectError:
                pool.observe("connect_error", time.perf_counter() - started)
                pool.connect_failed(replica)
                # Nothing left the gateway, whatever the method.
                other = pool.pick(exclude=replica) if not retried and not deadline.expired else None
                if other is None:
                    raise _unavailable(
                        pool, f"no replica of upstream {pool.name!r} could be reached; retry shortly", 1
                    ) from None
            except (BodyTooLargeError, ExchangeBrokenError, asyncio.TimeoutError, OSError) as exc:
                other = self._after_break(pool, replica, outgoing, deadline, exc, started, retried)
            else:
                pool.connected(replica)
                pool.observe(f"{upstream.status // 100}xx", time.perf_counter() - started)
                return upstream
            retried = True
            pool.retries.inc()
            replica = other

    @staticmethod
    def _after_break(
        pool: UpstreamPool,
        replica: Replica,
        outgoing: _Outgoing,
        deadline: Deadline,
        error: BaseException,
        started: float,
        retried: bool,
    ) -> Replica:
        """After a request was (perhaps partly) sent: the replica to try once more, or the
        Problem that answers it (413, 408, 504, 502)."""
        elapsed = time.perf_counter() - started
        body = outgoing.body
        if body is not None and body.too_large:
            raise _too_large(outgoing.max_body_bytes) from None
        if deadline.expired or isinstance(error, asyncio.TimeoutError):
            pool.observe("timeout", elapsed)
            if body is not None and body.incomplete:
                # The client's body was still arriving: its fault, not the upstream's
                # (RFC 9110 15.5.9); a slow POST never becomes a 5xx.
                raise Problem(
                    408, f"the request body did not arrive within {outgoing.timeout:g} s",
                    kind="request-timeout",
                ) from None
            raise _timed_out(pool) from None
        pool.observe("broken", elapsed)
        # Sent, then the connection broke: only a safe request without an answer may go
        # again (RFC 9110 9.2.1); one with side effects that reached a backend never does.
        safe = outgoing.method in SAFE_METHODS and body is None
        unanswered = not (isinstance(error, ExchangeBrokenError) and error.answered)
        other = pool.pick(exclude=replica) if safe and unanswered and not retried else None
        if other is None:
            raise _failed(pool) from None
        return other

    @staticmethod
    async def exchange(
        replica: Replica, deadline: Deadline, outgoing: _Outgoing, traceparent: str | None = None
    ) -> Response:
        connection = await replica.connections.acquire()
        if deadline.expired:
            connection.finish()
            raise asyncio.TimeoutError()
        deadline.connection = connection
        try:
            return await connection.exchange(
                outgoing.head(replica, traceparent), outgoing.body.chunks() if outgoing.body is not None else None,
                head_request=outgoing.method == "HEAD", chunked=outgoing.chunked,
            )
        except BaseException:
            connection.close()
            raise

    async def _relay(
        self,
        request: web.Request,
        upstream: Response,
        pool: UpstreamPool,
        deadline: Deadline,
        extra: Mapping[str, str] | None,
    ) -> web.StreamResponse:
        headers, length = response_headers(upstream.headers, extra)
        status = upstream.status
        if request.method == "HEAD" or status in (204, 304) or status < 200:
            response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
            if length is not None and request.method == "HEAD":
                response.content_length = length
            return response
        if length is not None and length <= BUFFERED_RESPONSE_MAX:
            try:
                data = upstream.read_arrived()
                if data is None:
                    data = await upstream.read()
            except asyncio.TimeoutError:
                raise _timed_out(pool) from None
            except (ExchangeBrokenError, OSError):
                raise _failed(pool, "broke off its answer") from None
            if deadline.expired:
                raise _timed_out(pool)
            response = web.Response(status=status, reason=upstream.reason, body=data, headers=headers)
            return response
        # Streamed: the deadline bounded the wait for the answer; the body may take its time.
        deadline.cancel()
        response = web.StreamResponse(status=status, reason=upstream.reason, headers=headers)
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        try:
            async for chunk in upstream.iter_chunks():
                await response.write(chunk)
        except (ExchangeBrokenError, OSError, asyncio.TimeoutError) as exc:
            # Too late for an error status: cut the connection so the client sees a failure.
            _LOGGER.warning("upstream %s broke off a streamed answer: %s", pool.name, type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
