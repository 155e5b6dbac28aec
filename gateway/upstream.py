"""The proxy path's HTTP/1.1 client: keep-alive connections to one replica, on asyncio.Protocol.

Why not aiohttp's ClientSession here: it costs about 330,000 instructions per upstream
request, over half of a whole aiohttp proxy, and none of its features (cookies, redirects,
decompression, proxies, auth) has a place on a proxy path. This client does only what a
proxy needs, and parses nothing by hand: responses are parsed by httptools (llhttp, the
parser of Node.js), which also undoes chunked coding. What is ours is the connection
handling:

- One exchange at a time per connection (no pipelining); a connection goes back to its
  pool only when its response was read to the end, the request body was sent whole and
  both sides keep it alive. Anything else (an error, a timeout, an early answer, a HEAD
  whose body length llhttp cannot skip, bytes the server sends unasked) closes it.
- Request bodies are sent as they arrive, with Content-Length when the client gave one and
  chunked otherwise, respecting the transport's write flow control.
- Response bodies are buffered up to a high-water mark, past which reading from the
  upstream pauses until the client has taken what was read (backpressure both ways).
- Idle connections are reused most recently used first and closed after `idle_seconds`,
  well under the backends' keep-alive timeout, so a reused one has not just been dropped.
- The pool is bounded: past `max_connections` a caller waits for a connection to come back.

Errors say how far an exchange got, which is what the proxy's retry rules need:
ConnectError (nothing was sent), ExchangeBrokenError (sent, then the connection failed or the answer
was malformed) and TimeoutError.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator

import httptools

_LOGGER = logging.getLogger(__name__)

READ_HIGH_WATER = 256 * 1024  # buffered response bytes past which reading pauses
IDLE_SECONDS = 15.0  # aiohttp servers keep idle connections 75 s; nginx 75 s; Envoy 1 h
MAX_CONNECTIONS = 1024  # per replica: far above what one gateway process can keep busy
MAX_IDLE = 256  # idle connections kept per replica


class UpstreamError(Exception):
    pass


class ConnectError(UpstreamError):
    """The connection could not be opened: nothing was sent."""


class ExchangeBrokenError(UpstreamError):
    """The request was (perhaps partly) sent, then the connection failed or the answer was
    not valid HTTP. `answered` says whether the response had begun."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class Response:
    """An upstream response: status and raw headers at once, the body as it arrives."""

    __slots__ = ("status", "reason", "headers", "content_length", "_connection")

    def __init__(
        self, connection: Connection, status: int, reason: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        self._connection = connection

    def read_arrived(self) -> bytes | None:
        """The whole body if all of it has arrived (a small answer's usual case: it comes
        with the head), read without the coroutines of read(); else None."""
        return self._connection.whole_body()

    async def read(self) -> bytes:
        """The whole body."""
        # A loop of its own rather than iter_chunks(): an async generator costs the event
        # loop's first-iteration hook and a weak reference kept until it is finalised.
        connection = self._connection
        parts = []
        while chunk := await connection.next_chunk():
            parts.append(chunk)
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if not chunk:
                return
            yield chunk

    def release(self) -> None:
        """Done with this response: the connection returns to its pool if it can be reused."""
        self._connection.finish()


class Connection(asyncio.Protocol):
    """One keep-alive connection to a replica; the parser's callbacks are its methods."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.closed = False
        # The exchange in progress.
        self._response: Response | None = None
        self._response_waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_request = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._chunk_waiter: asyncio.Future[None] | None = None
        self._message_done = False
        self._keep_alive = False  # read from the parser while it still knows (it resets after)
        self._read_paused = False
        self._failure: BaseException | None = None
        self._request_sent = True
        self._write_ready: asyncio.Future[None] | None = None
        self._write_paused = False
        self.reusable = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._response_waiter is None and self._response is None:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self._fail(ExchangeBrokenError("the upstream sent data outside an exchange"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ExchangeBrokenError(f"the upstream's answer is not valid HTTP/1.1: {exc}",
                              answered=self._response is not None))
            if self._message_done:
                self._wake_reader()  # what came before the extra bytes is whole

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._response is not None and not self._message_done and self._reads_until_close():
            self._message_done = True  # RFC 9112 6.3 item 8: the close ends the body
            self._wake_reader()
        else:
            self._fail(ExchangeBrokenError("the upstream closed the connection", answered=self._response is not None))
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)  # the writer wakes, and its next write is ExchangeBrokenError

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._message_done or (self._response_waiter is None and self._response is None):
            # A second answer to one request (or bytes past the announced length): the
            # connection's framing can no longer be trusted, and the extra answer must
            # never be taken for the next request's (response splitting).
            raise ExchangeBrokenError("the upstream sent more than one answer")

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (RFC 9110 15.2); the final one follows on the same message stream.
            self._headers = []
            self._reason = b""
            return
        response = Response(self, status, self._reason.decode("latin-1"), self._headers)
        self._response = response
        self._keep_alive = self._parser.should_keep_alive()
        waiter = self._response_waiter
        self._response_waiter = None
        if self._head_request or status in (204, 304):
            # No body follows (RFC 9110 9.3.2, 15.3.5, 15.4.5). llhttp cannot be told a HEAD
            # response has none, so a HEAD's parser is replaced before the next exchange.
            self._message_done = True
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def on_message_complete(self) -> None:
        if self._response is None:
            return  # the end of an interim (1xx) answer
        self._message_done = True
        self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
        self._wake_reader()

    # the exchange

    async def exchange(
        self, head: bytes, body: AsyncIterator[bytes] | None, *, head_request: bool, chunked: bool
    ) -> Response:
        """Send one request and return its response once the status line and headers arrived."""
        assert self.transport is not None
        self._reset(head_request)
        waiter = self._response_waiter = self._loop.create_future()
        self._write(head)
        if body is None:
            return await waiter
        self._request_sent = False
        sender = asyncio.ensure_future(self._send_body(body, chunked))
        try:
            await asyncio.wait((waiter, sender), return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                if sender.exception() is not None:
                    # The body's own failure (too large, client gone ...) decides; nobody
                    # will wait for an answer now.
                    self._response_waiter = None
                    waiter.cancel()
                    sender.result()
                return await waiter
            return waiter.result()
        finally:
            if not sender.done():
                # Answered before the body was sent whole (say a 413): stop sending; the
                # connection cannot be reused with half a body in it.
                sender.cancel()
            elif not sender.cancelled() and sender.exception() is not None and waiter.done():
                sender.exception()  # retrieved: the answer is what counts now

    async def _send_body(self, body: AsyncIterator[bytes], chunked: bool) -> None:
        async for chunk in body:
            if not chunk:
                continue
            self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if self._write_paused:
                self._write_ready = self._loop.create_future()
                await self._write_ready
        if chunked:
            self._write(b"0\r\n\r\n")
        self._request_sent = True

    def _write(self, data: bytes) -> None:
        """Write to the upstream, or raise ExchangeBrokenError when the connection has gone: its close
        may not have been reported yet (uvloop raises RuntimeError on a closed transport,
        asyncio drops the data), and the retry rules must see a broken connection."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise ExchangeBrokenError("the upstream closed the connection", answered=self._response is not None)
        try:
            transport.write(data)
        except (RuntimeError, OSError) as exc:
            raise ExchangeBrokenError(f"writing to the upstream failed: {exc}") from exc

    def whole_body(self) -> bytes | None:
        """Every body chunk at once when the message is complete (as next_chunk would give
        them, then b""), else None."""
        if not self._message_done:
            return None
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._read_paused:
            self._read_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return body

    async def next_chunk(self) -> bytes:
        """The next piece of the response body; b"" at its end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._read_paused and self._buffered <= READ_HIGH_WATER // 2:
                    self._read_paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                return chunk
            if self._message_done:
                return b""
            if self._failure is not None:
                raise self._failure
            self._chunk_waiter = self._loop.create_future()
            try:
                await self._chunk_waiter
            finally:
                self._chunk_waiter = None

    @property
    def usable(self) -> bool:
        """Open as far as this side knows (a close may still be on its way)."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def finish(self) -> None:
        """The exchange is over: keep the connection for the next one, or close it."""
        keep = (
            self._message_done
            and self._request_sent
            and not self._chunks
            and self._failure is None
            and not self.closed
            and self._keep_alive
        )
        if self._head_request:
            self._parser = httptools.HttpResponseParser(self)
        self._response = None
        self._response_waiter = None
        if keep:
            self._pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self._pool.forget(self)

    def abort(self, error: BaseException) -> None:
        """Give up on the exchange (its deadline passed): fail the waiters, drop the connection."""
        self._fail(error)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._pool.forget(self)

    def _reset(self, head_request: bool) -> None:
        self._headers = []
        self._reason = b""
        self._head_request = head_request
        self._chunks.clear()
        self._buffered = 0
        self._message_done = False
        self._keep_alive = False
        self._failure = None
        self._request_sent = True

    def _reads_until_close(self) -> bool:
        """A response framed by neither Content-Length nor chunked coding ends at the close."""
        response = self._response
        if response is None:
            return False
        for name, value in response.headers:
            lname = name.lower()
            if lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        waiter = self._response_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._wake_reader()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def _wake_reader(self) -> None:
        waiter = self._chunk_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ConnectionPool:
    """The keep-alive connections to one replica (`host`, `port`), bounded in number."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        connect_timeout: float,
        max_connections: int = MAX_CONNECTIONS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls or None  # True: the default context, verifying the certificate
        self.loop = asyncio.get_event_loop()
        self._connect_timeout = connect_timeout
        self._max = max_connections
        self._idle_seconds = idle_seconds
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._members: set[Connection] = set()
        self._retired = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def acquire(self) -> Connection:
        """An idle connection (most recently used first), or a new one; waits at the bound."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
        while self._open >= self._max:
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            while idle:
                connection = idle.pop()
                if connection.usable:
                    return connection
        self._open += 1
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: Connection(self), self.host, self.port, ssl=self._tls
                ),
                self._connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            self._open -= 1
            self._wake_one()
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {type(exc).__name__}") from exc
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        self._members.add(connection)
        return connection

    def put_back(self, connection: Connection) -> None:
        if self._retired or len(self._idle) >= MAX_IDLE:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake_one()

    def forget(self, connection: Connection) -> None:
        """A connection closed: it no longer counts against the bound."""
        if connection in self._members:
            self._members.discard(connection)
            self._open -= 1
            self._wake_one()

    def close_idle(self, older_than: float | None = None) -> None:
        """Close idle connections idle longer than `older_than` seconds (default the pool's
        idle limit); with 0, every idle one."""
        limit = self._idle_seconds if older_than is None else older_than
        cutoff = time.monotonic() - limit
        keep = []
        for connection in self._idle:
            if connection.closed:
                continue
            if connection.idle_since <= cutoff:
                connection.close()
            else:
                keep.append(connection)
        self._idle[:] = keep

    def retire(self) -> None:
        """No more exchanges here: idle connections close now, busy ones when done."""
        self._retired = True
        self.close_idle(0)

    def close(self) -> None:
        """Close every connection, busy ones too: the replica is gone."""
        for connection in list(self._members):
            connection.close()
        self._idle.clear()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
