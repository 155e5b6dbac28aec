"""A small pool of asyncpg connections for the request path.

Why not asyncpg's Pool: its checkout and return cost about 70-85 us of CPU per query
here (a task for the acquire timeout, an asyncio.Queue, a shielded task on release),
against about 60-75 us for the query itself. This pool hands out an idle connection
with a list pop and takes it back with an append; it only waits (with a timeout) when
every connection is in use, and opens connections on demand, none at start, so a
service starts, unready, without its database.

A connection comes back clean or not at all: `release(connection, reusable=False)`, for
a call that failed or was cancelled part-way (a query may still be running, or a
transaction open), closes it rather than resetting it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class PoolClosedError(asyncpg.InterfaceError):
    """The pool was closed (the service is stopping)."""


class ConnectionPool:
    def __init__(self, connect: Connect, *, max_size: int, acquire_timeout: float) -> None:
        self._connect = connect
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._idle: list[asyncpg.Connection] = []
        self._open = 0  # idle, in use, or being opened
        # Requests waiting for a connection: each gets one handed over, or None when a
        # slot opened up (a connection was closed), to open a new one itself.
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise PoolClosedError("the connection pool is closed")
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
                self._open -= 1
            if self._open < self._max_size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake_one(None)
                    raise
            handed = await self._wait()
            if handed is not None:
                return handed

    async def _wait(self) -> asyncpg.Connection | None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._acquire_timeout):
                return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed over just as the wait ended: pass it on rather than lose it.
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._wake_one(None)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self, connection: asyncpg.Connection, *, reusable: bool = True) -> None:
        if self._closed or not reusable or connection.is_closed() or connection.is_in_transaction():
            connection.terminate()
            self._open -= 1
            self._wake_one(None)
            return
        self._wake_one(connection)

    def _wake_one(self, connection: asyncpg.Connection | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is not None:
            self._idle.append(connection)

    async def close(self, timeout: float) -> None:
        """Close the idle connections gracefully; the ones in use close when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosedError("the connection pool is closed"))
        self._waiters.clear()
        for connection in idle:
            try:
                await asyncio.wait_for(connection.close(), timeout)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                connection.terminate()
