"""A TCP proxy the test controls, standing for the network between a service and PostgreSQL.

The machine's PostgreSQL is shared and must never be restarted by a test, so "the database
goes away" is shown one hop earlier: the service's PASSGATE_DATABASE_URL points at this proxy,
which relays to the real server until the test cuts it (every open connection aborted, new
ones refused: exactly what a restarting or unreachable server looks like to asyncpg) and
later restores it on the same port. It can also pause (hold every byte sent towards the
database) so that requests stay genuinely in flight inside a service for as long as the
test wants.

The proxy runs on its own event loop in a background thread, because the stack it serves is
started and stopped by blocking calls from fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    """Relays 127.0.0.1:<port> to a target address; cut(), restore(), pause(), resume()."""

    def __init__(self, target_host: str, target_port: int, port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()  # set: bytes towards the target flow; clear: held
        self._open.set()
        self.held: set[_Link] = set()  # links with bytes waiting at the closed gate
        self.connections_accepted = 0

    # -- control (coroutines: run them on the proxy's loop) --------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )

    async def cut(self) -> None:
        """Refuse new connections and abort every open one."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            link.abort()
        self._links.clear()
        self.held.clear()

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def pause(self) -> None:
        self._open.clear()

    async def resume(self) -> None:
        self._open.set()

    async def held_count(self) -> int:
        return len(self.held)

    async def close(self) -> None:
        await self.resume()
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- relaying --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        towards_target = self._spawn(self._pump(reader, up_writer, link, gated=True))
        towards_client = self._spawn(self._pump(up_reader, writer, link, gated=False))
        await asyncio.wait({towards_target, towards_client}, return_when=asyncio.FIRST_COMPLETED)
        link.abort()
        self._links.discard(link)
        self.held.discard(link)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *, gated: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if gated and not self._open.is_set():
                    self.held.add(link)
                    await self._open.wait()
                    self.held.discard(link)
                writer.write(data)
                await writer.drain()


class BackgroundLoop:
    """An event loop in a daemon thread; run(coro) executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-proxy-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def run_async(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """The same from another running loop (an async test), without blocking it."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def close(self) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
