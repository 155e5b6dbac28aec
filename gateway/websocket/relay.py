"""The relay: the last step of a WebSocket route's handshake, then frames both ways.

By the time `forward` runs, the pipeline has verified the token, checked the route's
scopes and taken from the caller's rate-limit bucket, exactly as for an HTTP request.
Then, in order:

- the caller's slot: at most `max_connections` sockets per gateway (503) and
  `max_per_caller` per token subject (429), refused before anything is opened upstream;
- the upstream leg, on a replica picked from the route's UpstreamPool (so round robin,
  ejection and readiness apply), with the same header lines an HTTP request carries: the
  X-User-* fields and the signed identity assertion, client-sent X-User-* stripped, no
  bearer token (neither Authorization nor the subprotocol offer ever leaves the gateway).
  A replica that cannot be reached counts towards its ejection and one other is tried.
  This leg uses aiohttp's client (`ws_connect`): a handshake is once per socket, not per
  request, so the cost that kept aiohttp's client off the HTTP path does not apply here;
- the client's upgrade (101), answering the `passgate.v1` subprotocol when offered;
- two pumps, one per direction, each receiving one message and sending it before it
  receives the next. A send waits while the other side's socket buffer is full, so a slow
  reader stops the pump feeding it, the gateway stops reading the fast side, and TCP
  flow control pushes back on the sender: memory per socket stays bounded by the buffers.
  A message longer than the route's max_body_bytes closes the socket with 1009 (RFC 6455
  7.4.1), in either direction.
- one sweeper per gateway, every second, closes sockets whose token has expired or whose
  signing key left auth's key set (4001, "token expired": the client reconnects with a
  fresh token) or that relayed nothing either way for `idle_timeout_seconds` (4002),
  pings clients quiet for PING_SECONDS, and moves the per-socket tallies into the
  Prometheus counters (a counter increment per message would cost more than the relaying
  itself: a tally is two integer additions).

Close codes a peer sends pass through to the other side; an abnormal end (1005, 1006, a
broken connection) becomes 1011 towards the client and 1001 towards the upstream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, hdrs, web

from common.errors import Problem, too_many_requests
from common.timestamps import EpochClock
from gateway.app_keys import JWKS
from gateway.jwks import JwksClient
from gateway.proxy import UpstreamPool
from gateway.routes import RouteConfig
from gateway.verification import Verified
from gateway.websocket.handshake import SUBPROTOCOL, offers_subprotocol
from gateway.websocket.metrics import WebSocketMetrics
from gateway.websocket.settings import WebSocketSettings

_LOGGER = logging.getLogger(__name__)

TOKEN_EXPIRED = 4001
IDLE = 4002
CLOSE_TIMEOUT_SECONDS = 2.0  # how long a close frame waits for the peer's
PING_SECONDS = 30.0  # a quiet client is pinged this often (intermediaries cut silent sockets)
MAX_CLOSE_REASON = 123  # bytes: a close frame's payload is at most 125 (RFC 6455 5.5)
_RELAYED = (WSMsgType.TEXT, WSMsgType.BINARY)
# Close codes an endpoint may not send (RFC 6455 7.4.1: 1005, 1006 and 1015 only report).
_UNSENDABLE = frozenset({1004, 1005, 1006, 1015})


class _Tally:
    """Messages and bytes one pump relayed, and how much of it the counters have."""

    __slots__ = ("messages", "bytes", "flushed_messages", "flushed_bytes")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.flushed_messages = 0
        self.flushed_bytes = 0


class _Socket:
    """One relayed socket: both legs, its end of life, its tallies."""

    __slots__ = ("client", "upstream", "caller", "valid_until", "kid", "to_upstream",
                 "to_client", "stop", "last_count", "active_at", "pinged_at")

    def __init__(
        self,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        caller: str,
        verified: Verified,
        now: float,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.caller = caller
        self.valid_until = verified.valid_until
        self.kid = verified.kid
        self.to_upstream = _Tally()
        self.to_client = _Tally()
        # Resolved with (close code, text, reason label) when the gateway ends the socket.
        self.stop: asyncio.Future[tuple[int, str, str]] = asyncio.get_running_loop().create_future()
        self.last_count = 0
        self.active_at = now
        self.pinged_at = now

    def end(self, code: int, text: str, reason: str) -> None:
        if not self.stop.done():
            self.stop.set_result((code, text, reason))


class Relay:
    """Relays the WebSockets of every websocket route of one gateway."""

    def __init__(
        self,
        settings: WebSocketSettings,
        *,
        metrics: WebSocketMetrics,
        clock: EpochClock,
    ) -> None:
        self._settings = settings
        self.metrics = metrics
        self._clock = clock
        self._sockets: set[_Socket] = set()
        self._per_caller: collections.Counter[str] = collections.Counter()
        self._reserved = 0
        self._sweep_seconds = min(1.0, settings.idle_timeout_seconds / 4)
        self._session: aiohttp.ClientSession | None = None
        self._pings: set[asyncio.Task[None]] = set()
        self._jwks: JwksClient | None = None  # the app's, once the first handshake is seen

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: the client session of the upstream legs, and the sweeper."""
        # No connection limit of its own: a WebSocket holds its connection for its whole
        # life, and the gateway's cap on sockets is the limit.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        sweeper = asyncio.create_task(self._sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
            await self._session.close()

    async def shutdown(self, app: web.Application) -> None:
        """on_shutdown: say goodbye (1001) to every socket before the server stops."""
        for socket in list(self._sockets):
            socket.end(WSCloseCode.GOING_AWAY, "gateway shutting down", "shutdown")

    async def forward(
        self,
        request: web.Request,
        route: RouteConfig,
        pool: UpstreamPool,
        head_fields: str,
        extra_response_headers: Mapping[str, str] | None = None,
        verified: Verified | None = None,
    ) -> web.StreamResponse:
        """The pipeline's last step for a handshake: the same signature as Proxy.forward.
        `verified` is the token the pipeline checked: the socket lives until it ends."""
        assert verified is not None, "the routes file refuses public websocket routes"
        self._jwks = request.app[JWKS]
        caller = verified.identity.subject
        self._reserve(caller)
        try:
            upstream = await self._connect(request, route, pool, head_fields)
            try:
                client = web.WebSocketResponse(
                    protocols=(SUBPROTOCOL,) if offers_subprotocol(request) else (),
                    max_msg_size=route.max_body_bytes + 1,  # aiohttp's limit is exclusive
                    compress=False,
                    decode_text=False,  # text is relayed as the bytes it came as
                    timeout=CLOSE_TIMEOUT_SECONDS,
                )
                if extra_response_headers:
                    client.headers.update(extra_response_headers)
                await client.prepare(request)
            except BaseException:
                await upstream.close(code=WSCloseCode.GOING_AWAY)
                raise
            socket = _Socket(client, upstream, caller, verified, self._now())
            self._sockets.add(socket)
            self.metrics.open.inc()
            try:
                await self._relay(socket)
            except Exception:  # noqa: BLE001 - past the 101 no error answer can be sent
                _LOGGER.exception("WebSocket relay failed")
                self.metrics.closes["error"].inc()
                await _close_both(client, WSCloseCode.INTERNAL_ERROR, b"gateway error",
                                  upstream, WSCloseCode.GOING_AWAY)
            finally:
                self._sockets.discard(socket)
                self._flush(socket)
                self.metrics.open.dec()
            return client
        finally:
            self._release(caller)

    def _reserve(self, caller: str) -> None:
        if self._reserved >= self._settings.max_connections:
            self.metrics.refused["capacity"].inc()
            raise Problem(
                503, "this gateway holds as many WebSockets as it may; retry shortly",
                kind="websocket-capacity", headers={"Retry-After": "5"},
            )
        if self._per_caller[caller] >= self._settings.max_per_caller:
            self.metrics.refused["caller_limit"].inc()
            raise too_many_requests(
                5, f"at most {self._settings.max_per_caller} WebSockets per caller are open at once"
            )
        self._reserved += 1
        self._per_caller[caller] += 1

    def _release(self, caller: str) -> None:
        self._reserved -= 1
        self._per_caller[caller] -= 1
        if not self._per_caller[caller]:
            del self._per_caller[caller]

    async def _connect(
        self, request: web.Request, route: RouteConfig, pool: UpstreamPool, head_fields: str
    ) -> aiohttp.ClientWebSocketResponse:
        """The upstream leg: one replica, and one other if the first cannot be reached."""
        assert self._session is not None, "the relay runs inside the app's cleanup context"
        # The pipeline's header lines, less the client's own handshake fields: the client
        # makes its own key and version, and the subprotocol offer may hold the token.
        lines = (line.partition(": ") for line in head_fields.split("\r\n") if line)
        headers = [
            (name, value) for name, _, value in lines if not name.lower().startswith("sec-websocket-")
        ]
        target = request.rel_url.raw_path
        if request.rel_url.raw_query_string:
            target = f"{target}?{request.rel_url.raw_query_string}"
        replica = pool.pick()
        for attempt in (1, 2):
            if replica is None:
                break
            try:
                async with asyncio.timeout(route.timeout):
                    upstream = await self._session.ws_connect(
                        f"{replica.url}{target}",
                        headers=[*headers, (hdrs.HOST, replica.host_header)],
                        max_msg_size=route.max_body_bytes + 1,
                        compress=0,
                        autoping=True,
                        decode_text=False,
                        timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_SECONDS),
                    )
            except aiohttp.WSServerHandshakeError as refused:
                self.metrics.refused["upstream"].inc()
                status = refused.status if 400 <= refused.status < 500 else 502
                raise Problem(
                    status,
                    f"upstream {pool.name!r} refused the WebSocket handshake ({refused.status})",
                    kind="upstream-refused-websocket",
                ) from None
            except TimeoutError:
                self.metrics.refused["upstream"].inc()
                raise Problem(
                    504, f"upstream {pool.name!r} did not accept the WebSocket in time",
                    kind="upstream-timeout",
                ) from None
            except (aiohttp.ClientError, OSError):
                pool.connect_failed(replica)
                replica = pool.pick(exclude=replica) if attempt == 1 else None
                continue
            pool.connected(replica)
            return upstream
        self.metrics.refused["upstream"].inc()
        raise Problem(
            503, f"no replica of upstream {pool.name!r} could be reached; retry shortly",
            kind="upstream-unavailable", headers={"Retry-After": "1"},
        )

    async def _relay(self, socket: _Socket) -> None:
        """Pump both ways until one side ends or the gateway ends the socket, then close
        the other side. The reason is counted before the closing handshakes: the client's
        connection may go (and aiohttp cancel this handler) while they run."""
        client, upstream = socket.client, socket.upstream
        to_upstream = asyncio.create_task(_pump(client, upstream, socket.to_upstream))
        to_client = asyncio.create_task(_pump(upstream, client, socket.to_client))
        try:
            done, _ = await asyncio.wait(
                {to_upstream, to_client, socket.stop}, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client's connection goes, which is also
            # how a client's close handshake can end.
            ended = to_upstream.result() if to_upstream.done() else None
            self.metrics.closes["message_too_big" if _too_big(ended) else "client_closed"].inc()
            await _stop(to_upstream, to_client)
            await upstream.close(code=WSCloseCode.GOING_AWAY)
            raise
        await _stop(to_upstream, to_client)
        if socket.stop.done():
            code, text, reason = socket.stop.result()
            self.metrics.closes[reason].inc()
            await _close_both(client, code, text.encode(), upstream, WSCloseCode.GOING_AWAY)
        elif to_upstream in done:  # the client's side ended
            ended = to_upstream.result()
            if _too_big(ended):
                self.metrics.closes["message_too_big"].inc()
                await upstream.close(code=WSCloseCode.GOING_AWAY)
            else:
                self.metrics.closes["client_closed"].inc()
                await upstream.close(code=_passable(ended, WSCloseCode.GOING_AWAY))
        else:
            await self._after_upstream(client, upstream, to_client.result())

    async def _after_upstream(
        self,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        last: aiohttp.WSMessage,
    ) -> None:
        """The upstream's side ended: pass its close on, or say it failed (1011)."""
        if _too_big(last):
            reason, code, text = "message_too_big", WSCloseCode.MESSAGE_TOO_BIG, "message too big"
        elif last.type is not WSMsgType.CLOSE or last.data in _UNSENDABLE:
            reason, code, text = "upstream_failed", WSCloseCode.INTERNAL_ERROR, "upstream failed"
        else:
            reason, code, text = "upstream_closed", last.data, last.extra or ""
        self.metrics.closes[reason].inc()
        await client.close(code=code, message=text.encode()[:MAX_CLOSE_REASON])

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            now, mono = self._clock(), self._now()
            idle_before = mono - self._settings.idle_timeout_seconds
            for socket in list(self._sockets):
                count = self._flush(socket)
                if count != socket.last_count:
                    socket.last_count, socket.active_at = count, mono
                if now >= socket.valid_until or not self._key_usable(socket.kid, now):
                    socket.end(TOKEN_EXPIRED, "token expired", "token_expired")
                elif socket.active_at < idle_before:
                    socket.end(IDLE, "idle timeout", "idle")
                elif mono - max(socket.active_at, socket.pinged_at) >= PING_SECONDS:
                    socket.pinged_at = mono
                    self._ping(socket.client)

    def _key_usable(self, kid: str, now: float) -> bool:
        """Whether the token's signing key is still published: a key withdrawn from auth's
        key set (a compromised key) ends its sockets as it ends its tokens' requests."""
        return self._jwks is None or self._jwks.usable(kid, now)

    def _ping(self, client: web.WebSocketResponse) -> None:
        """A ping to a client quiet for PING_SECONDS: load balancers and ingress proxies
        cut connections silent for about a minute (ingress-nginx and AWS ALB: 60 s).
        Pings are not messages: they do not count against the idle timeout."""
        task = asyncio.create_task(client.ping())
        self._pings.add(task)
        task.add_done_callback(self._pings.discard)

    def _flush(self, socket: _Socket) -> int:
        """Move what the socket relayed since the last flush into the counters; return
        every message it ever relayed (the sweeper's sign of activity)."""
        total = 0
        tallies = (("to_upstream", socket.to_upstream), ("to_client", socket.to_client))
        for direction, tally in tallies:
            if tally.messages != tally.flushed_messages:
                self.metrics.messages[direction].inc(tally.messages - tally.flushed_messages)
                self.metrics.bytes[direction].inc(tally.bytes - tally.flushed_bytes)
                tally.flushed_messages, tally.flushed_bytes = tally.messages, tally.bytes
            total += tally.messages
        return total

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    tally: _Tally,
) -> aiohttp.WSMessage:
    """Relay messages from source to sink, one at a time, until source ends; the message
    that ended it (close, closing, closed, error: the relay decides what follows)."""
    receive, send = source.receive, sink.send_frame
    while True:
        message = await receive()
        if message.type not in _RELAYED:
            return message
        await send(message.data, message.type)
        tally.messages += 1
        tally.bytes += len(message.data)


async def _stop(*pumps: asyncio.Task[aiohttp.WSMessage]) -> None:
    for pump in pumps:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


def _too_big(ended: aiohttp.WSMessage | None) -> bool:
    """Whether a pump ended on a message over the size limit (aiohttp reports it as an
    error with code 1009, after answering the sender's side with a 1009 close)."""
    return (
        ended is not None
        and ended.type is WSMsgType.ERROR
        and getattr(ended.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
    )


def _passable(ended: aiohttp.WSMessage, otherwise: int) -> int:
    """The close code a side sent, to pass on to the other; `otherwise` when it sent none
    (the connection broke) or one an endpoint may not send."""
    if ended.type is WSMsgType.CLOSE and ended.data not in _UNSENDABLE:
        return int(ended.data)
    return otherwise


async def _close_both(
    client: web.WebSocketResponse, code: int, text: bytes,
    upstream: aiohttp.ClientWebSocketResponse, upstream_code: int,
) -> None:
    await asyncio.gather(
        client.close(code=code, message=text),
        upstream.close(code=upstream_code),
        return_exceptions=True,
    )
