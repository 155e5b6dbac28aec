"""The proxy path's HTTP/1.1 client against backends that misbehave at the byte level.

Each backend here is a raw asyncio server that answers with exactly the bytes a test
scripts, so framing lies, stalls, early closes and interim answers can be produced; the
gateway-level tests at the end put the same backends behind the real gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.upstream import ExchangeBrokenError, ConnectError, ConnectionPool
from tests.support.gateway_under_test import MISBEHAVE

Answer = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class RawBackend:
    """Reads each request head (and a Content-Length or chunked body), then lets `answer`
    write whatever bytes it likes; `answer` returns False to close the connection."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> RawBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = await _read_body(head, reader)
                self.requests.append((head, body))
                if not await self.answer(head, reader, writer):
                    return
        finally:
            self.open -= 1
            writer.close()


async def _read_body(head: bytes, reader: asyncio.StreamReader) -> bytes:
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


def reply(status: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def ok_answer(head, reader, writer) -> bool:
    writer.write(reply("200 OK", b"hello"))
    return True


@pytest.fixture
async def backend_factory():
    started: list[RawBackend] = []

    async def factory(answer: Answer) -> RawBackend:
        backend = await RawBackend(answer).start()
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        await backend.close()


async def get(pool: ConnectionPool, target: str = "/", method: str = "GET", body=None, chunked=False):
    """One exchange on the pool; the response body, status and the connection used."""
    connection = await pool.acquire()
    head = f"{method} {target} HTTP/1.1\r\nHost: test\r\n"
    if body is not None:
        head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n"
    head += "\r\n"

    async def chunks():
        for index in range(0, len(body), 3):
            yield body[index:index + 3]

    try:
        response = await connection.exchange(
            head.encode(), chunks() if body is not None else None,
            head_request=method == "HEAD", chunked=chunked,
        )
    except BaseException:
        connection.close()
        raise
    try:
        data = await response.read()
    finally:
        response.release()
    return response.status, data, connection


def pool_for(backend: RawBackend, **kwargs) -> ConnectionPool:
    return ConnectionPool("127.0.0.1", backend.port, connect_timeout=1.0, **kwargs)


async def test_keep_alive_reuses_one_connection(backend_factory) -> None:
    backend = await backend_factory(ok_answer)
    pool = pool_for(backend)
    results = [await get(pool) for _ in range(5)]
    assert [(status, data) for status, data, _ in results] == [(200, b"hello")] * 5
    assert backend.connections == 1
    assert len({id(connection) for _, _, connection in results}) == 1
    pool.close()


async def test_chunked_answer_is_decoded(backend_factory) -> None:
    async def chunked(head, reader, writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        return True

    backend = await backend_factory(chunked)
    pool = pool_for(backend)
    assert (await get(pool))[:2] == (200, b"hello world")
    assert (await get(pool))[:2] == (200, b"hello world")
    assert backend.connections == 1  # a chunked answer read to its end leaves it reusable
    pool.close()


async def test_a_body_that_came_with_its_head_is_read_at_once_and_a_late_one_is_awaited(backend_factory) -> None:
    release = asyncio.Event()

    async def head_then_body(head, reader, writer) -> bool:
        if b"GET /late" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello")
            await writer.drain()
            await release.wait()
            writer.write(b" world")
        else:
            writer.write(reply("200 OK", b"hello world"))
        return True

    backend = await backend_factory(head_then_body)
    pool = pool_for(backend)
    for target, arrived in (("/whole", b"hello world"), ("/late", None)):
        connection = await pool.acquire()
        response = await connection.exchange(f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode(), None,
                                             head_request=False, chunked=False)
        await asyncio.sleep(0.05)  # whatever the backend sent so far has arrived
        assert response.read_arrived() == arrived
        if arrived is None:  # nothing was taken: read() gets all of it once the rest comes
            release.set()
            assert await response.read() == b"hello world"
        response.release()
    assert backend.connections == 1  # both exchanges left the connection reusable
    pool.close()


async def test_body_shorter_than_its_content_length_is_broken(backend_factory) -> None:
    async def short(head, reader, writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        return False  # and close

    backend = await backend_factory(short)
    pool = pool_for(backend)
    with pytest.raises(ExchangeBrokenError) as caught:
        await get(pool)
    assert caught.value.answered
    assert pool.open_connections == 0
    pool.close()


async def test_bytes_beyond_content_length_never_reach_the_next_exchange(backend_factory) -> None:
    """A backend that sends more than it announced has desynchronised the connection: the
    extra bytes must not be read as the answer to the next request."""
    count = 0

    async def long(head, reader, writer) -> bool:
        nonlocal count
        count += 1
        if count == 1:
            writer.write(reply("200 OK", b"first") + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
        else:
            writer.write(reply("200 OK", b"second"))
        return True

    backend = await backend_factory(long)
    pool = pool_for(backend)
    first = await get(pool)
    await asyncio.sleep(0.05)  # let the unasked bytes arrive
    second = await get(pool)
    assert first[:2] == (200, b"first")
    assert second[:2] == (200, b"second")
    assert backend.connections == 2
    pool.close()


async def test_a_close_before_any_answer_is_broken_unanswered(backend_factory) -> None:
    async def hang_up(head, reader, writer) -> bool:
        return False

    backend = await backend_factory(hang_up)
    pool = pool_for(backend)
    with pytest.raises(ExchangeBrokenError) as caught:
        await get(pool)
    assert not caught.value.answered
    pool.close()


async def test_a_body_framed_by_the_close_is_read_whole(backend_factory) -> None:
    async def until_close(head, reader, writer) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        return False

    backend = await backend_factory(until_close)
    pool = pool_for(backend)
    assert (await get(pool))[:2] == (200, b"all of it")
    pool.close()


async def test_garbage_is_not_http(backend_factory) -> None:
    async def garbage(head, reader, writer) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        return True

    backend = await backend_factory(garbage)
    pool = pool_for(backend)
    with pytest.raises(ExchangeBrokenError):
        await get(pool)
    pool.close()


async def test_interim_answer_is_skipped(backend_factory) -> None:
    async def interim(head, reader, writer) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + reply("200 OK", b"final"))
        return True

    backend = await backend_factory(interim)
    pool = pool_for(backend)
    assert (await get(pool))[:2] == (200, b"final")
    assert (await get(pool))[:2] == (200, b"final")
    pool.close()


async def test_head_answer_then_get_on_the_same_connection(backend_factory) -> None:
    """A HEAD answer announces a length but carries no body; the next answer on the same
    connection must still be read correctly."""

    async def answer(head, reader, writer) -> bool:
        if head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        else:
            writer.write(reply("200 OK", b"hello"))
        return True

    backend = await backend_factory(answer)
    pool = pool_for(backend)
    assert (await get(pool, method="HEAD"))[:2] == (200, b"")
    assert (await get(pool))[:2] == (200, b"hello")
    assert (await get(pool, method="HEAD"))[:2] == (200, b"")
    assert (await get(pool))[:2] == (200, b"hello")
    pool.close()


async def test_request_bodies_with_length_and_chunked(backend_factory) -> None:
    async def echo_length(head, reader, writer) -> bool:
        writer.write(reply("200 OK", b"%d" % len(backend.requests[-1][1])))
        return True

    backend = await backend_factory(echo_length)
    pool = pool_for(backend)
    payload = b"0123456789" * 1000
    assert (await get(pool, method="POST", body=payload))[:2] == (200, b"10000")
    assert (await get(pool, method="POST", body=payload, chunked=True))[:2] == (200, b"10000")
    assert [body for _, body in backend.requests] == [payload, payload]
    assert b"transfer-encoding: chunked" in backend.requests[1][0].lower()
    assert backend.connections == 1
    pool.close()


async def test_a_large_answer_streams_through_with_backpressure(backend_factory) -> None:
    size = 4 * 1024 * 1024

    async def big(head, reader, writer) -> bool:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(size // 65536):
            writer.write(b"y" * 65536)
            await writer.drain()
        return True

    backend = await backend_factory(big)
    pool = pool_for(backend)
    connection = await pool.acquire()
    response = await connection.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", None,
                                         head_request=False, chunked=False)
    await asyncio.sleep(0.2)  # the reader is slow: the client must stop reading, not buffer it all
    assert connection._buffered <= 2 * 256 * 1024
    received = 0
    async for chunk in response.iter_chunks():
        received += len(chunk)
    response.release()
    assert received == size
    pool.close()


async def test_the_pool_is_bounded(backend_factory) -> None:
    async def slow(head, reader, writer) -> bool:
        await asyncio.sleep(0.05)
        writer.write(reply("200 OK", b"ok"))
        return True

    backend = await backend_factory(slow)
    pool = pool_for(backend, max_connections=2)
    results = await asyncio.gather(*(get(pool) for _ in range(8)))
    assert [r[:2] for r in results] == [(200, b"ok")] * 8
    assert backend.most_open <= 2
    pool.close()


async def test_idle_connections_close_and_a_gone_replica_is_noticed(backend_factory) -> None:
    backend = await backend_factory(ok_answer)
    pool = pool_for(backend)
    await get(pool)
    assert backend.open == 1
    pool.close_idle(0)
    for _ in range(50):
        if backend.open == 0:
            break
        await asyncio.sleep(0.01)
    assert backend.open == 0
    assert pool.open_connections == 0


async def test_a_server_closing_an_idle_connection_is_not_reused(backend_factory) -> None:
    async def once(head, reader, writer) -> bool:
        writer.write(reply("200 OK", b"ok"))
        return False  # closes after each answer, without saying Connection: close

    backend = await backend_factory(once)
    pool = pool_for(backend)
    await get(pool)
    await asyncio.sleep(0.05)  # the close arrives while the connection is idle
    assert (await get(pool))[:2] == (200, b"ok")
    assert backend.connections == 2
    pool.close()


async def test_nothing_listening_is_connect_failed() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = ConnectionPool("127.0.0.1", port, connect_timeout=1.0)
    with pytest.raises(ConnectError):
        await pool.acquire()
    assert pool.open_connections == 0


# Through the gateway.


async def test_gateway_times_out_a_stalled_backend(make_gateway, backend_factory) -> None:
    async def stall(head, reader, writer) -> bool:
        await asyncio.sleep(30)
        return False

    backend = await backend_factory(stall)
    stack = await make_gateway(
        upstreams={"auth": [backend.url], "users": [backend.url], "orders": [backend.url]},
        routes={"users_me_read": {"timeout": 0.3}},
    )
    response = await stack.client.get("/users/me", headers=stack.bearer())
    assert response.status == 504
    assert response.content_type == "application/problem+json"


async def test_gateway_relays_chunked_and_refuses_a_lying_length(make_gateway, backend_factory) -> None:
    async def answer(head, reader, writer) -> bool:
        if MISBEHAVE["lie"].encode() in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")
            return False
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
        return True

    backend = await backend_factory(answer)
    stack = await make_gateway(upstreams={"auth": [backend.url], "users": [backend.url], "orders": [backend.url]})
    response = await stack.client.get("/orders", headers=stack.bearer())
    assert response.status == 200
    assert await response.read() == b"abcdef"
    response = await stack.client.get(f"/orders/{MISBEHAVE['lie']}", headers=stack.bearer())
    assert response.status == 502
    assert response.content_type == "application/problem+json"


async def test_gateway_streams_a_client_body_without_length_as_chunked(make_gateway, backend_factory) -> None:
    async def answer(head, reader, writer) -> bool:
        writer.write(reply("201 Created", b"%d" % len(backend.requests[-1][1])))
        return True

    backend = await backend_factory(answer)
    stack = await make_gateway(upstreams={"auth": [backend.url], "users": [backend.url], "orders": [backend.url]})

    async def body():
        for _ in range(4):
            yield b"x" * 1000

    response = await stack.client.post("/orders", data=body(), headers=stack.bearer())
    assert response.status == 201
    assert await response.read() == b"4000"
    head = backend.requests[-1][0].lower()
    assert b"transfer-encoding: chunked" in head and b"content-length" not in head


async def test_a_connection_closing_but_not_yet_reported_is_never_written_to(backend_factory) -> None:
    """A transport can be closing before its connection_lost arrives (uvloop then raises on
    write, which was a 500): such a connection is not handed out again, and writing to one
    is a ExchangeBrokenError exchange the retry rules understand."""
    backend = await backend_factory(ok_answer)
    pool = pool_for(backend)
    _, _, connection = await get(pool)
    connection.transport.close()  # closing now; connection_lost comes on a later loop pass
    fresh = await pool.acquire()
    assert fresh is not connection
    with pytest.raises(ExchangeBrokenError) as caught:
        await connection.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", None, head_request=False, chunked=False)
    assert not caught.value.answered
    fresh.close()
    pool.close()
