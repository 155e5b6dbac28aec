"""The request path's PostgreSQL connection pool, against a real server."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from common.pg_pool import ConnectionPool, PoolClosedError

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def counting_connect(database_url: str):
    opened: list[asyncpg.Connection] = []

    async def connect() -> asyncpg.Connection:
        connection = await asyncpg.connect(database_url)
        opened.append(connection)
        return connection

    return connect, opened


@on_postgres
async def test_connections_are_reused_and_bounded(database_url) -> None:
    connect, opened = counting_connect(database_url)
    pool = ConnectionPool(connect, max_size=3, acquire_timeout=5)
    in_use = 0
    most = 0
    # Each query holds its connection until three are in use at once, so a quick first
    # query cannot hand its connection back before the third is open: the bound is
    # reached in every run (and a pool bounded lower would time out here).
    all_busy = asyncio.Event()

    async def query(n: int) -> int:
        nonlocal in_use, most
        connection = await pool.acquire()
        in_use += 1
        most = max(most, in_use)
        if in_use == 3:
            all_busy.set()
        try:
            await asyncio.wait_for(all_busy.wait(), 5)
            return await connection.fetchval("SELECT $1::int * 2", n)
        finally:
            in_use -= 1
            pool.release(connection)

    assert await asyncio.gather(*(query(n) for n in range(50))) == [n * 2 for n in range(50)]
    assert len(opened) == 3 and most == 3  # waiters were handed connections, none opened beyond
    await pool.close(5)
    assert all(c.is_closed() for c in opened)
    with pytest.raises(PoolClosedError):
        await pool.acquire()


@on_postgres
async def test_a_connection_not_reusable_is_closed_and_its_slot_freed(database_url) -> None:
    connect, opened = counting_connect(database_url)
    pool = ConnectionPool(connect, max_size=1, acquire_timeout=5)
    first = await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await first.execute("BEGIN")
    pool.release(first)  # left in a transaction: not handed on
    second = await waiting
    assert first.is_closed() and second is not first and not second.is_in_transaction()
    pool.release(second, reusable=False)
    assert second.is_closed()
    third = await pool.acquire()
    assert await third.fetchval("SELECT 1") == 1 and len(opened) == 3
    pool.release(third)
    await pool.close(5)


@on_postgres
async def test_waiting_times_out_and_nothing_is_lost(database_url) -> None:
    connect, opened = counting_connect(database_url)
    pool = ConnectionPool(connect, max_size=1, acquire_timeout=0.1)
    held = await pool.acquire()
    with pytest.raises(TimeoutError):
        await pool.acquire()
    pool.release(held)
    again = await pool.acquire()
    assert again is held and len(opened) == 1
    pool.release(again)
    await pool.close(5)


async def test_an_unreachable_server_fails_fast_and_frees_the_slot() -> None:
    async def refuse() -> asyncpg.Connection:
        raise ConnectionRefusedError("no server")

    pool = ConnectionPool(refuse, max_size=1, acquire_timeout=5)
    for _ in range(3):  # the slot is given back each time, so no call waits for it
        with pytest.raises(ConnectionRefusedError):
            await pool.acquire()
