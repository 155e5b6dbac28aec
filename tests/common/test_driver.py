"""The request path's database driver, on SQLite and on PostgreSQL: transactions, types,
and agreement with SQLAlchemy's engine on what is stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import uuid

import pytest
import sqlalchemy as sa

from common.db import create_engine
from common.driver import Driver, open_driver
from common.settings import DatabaseSettings
from common.sqlite_worker import SqliteWorker
from common.statements import Execute, ExecuteMany, Operation, Rows, Statement
from common.timestamps import UtcDateTime

metadata = sa.MetaData()
events = sa.Table(
    "driver_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
)
INSERT = Statement(
    events.insert().values(
        id=sa.bindparam("id"), at=sa.bindparam("at"), amount=sa.bindparam("amount")
    )
)
GET = Statement(
    sa.select(events.c.id, events.c.at, events.c.amount).where(events.c.id == sa.bindparam("id"))
)
ADD = Statement(
    events.update()
    .where(events.c.id == sa.bindparam("id"))
    .values(amount=events.c.amount + sa.bindparam("delta"))
)
AT = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


class Boom(Exception):
    pass


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def driver(engine, database_url):
    driver = await open_driver(DatabaseSettings(database_url, migrate_on_start=False))
    try:
        yield driver
    finally:
        await driver.close()


def insert_then(event_id: str, fail: bool) -> Operation[None]:
    yield Execute(INSERT, {"id": event_id, "at": AT, "amount": 1})
    changed = yield Execute(ADD, {"id": event_id, "delta": 10})
    assert changed == 1
    if fail:
        raise Boom()


def get(event_id: str) -> Operation[list[tuple]]:
    return (yield Rows(GET, {"id": event_id}))


async def test_a_write_operation_is_one_transaction(driver: Driver) -> None:
    kept, lost = str(uuid.uuid4()), str(uuid.uuid4())
    await driver.run(insert_then(kept, fail=False), write=True)
    with pytest.raises(Boom):
        await driver.run(insert_then(lost, fail=True), write=True)
    assert await driver.run(get(kept)) == [(kept, AT, 11)]
    assert await driver.run(get(lost)) == []  # the insert before the failure was rolled back


async def test_what_the_driver_stores_sqlalchemy_reads_and_back(driver: Driver, engine) -> None:
    """Both paths share the tables: timestamps keep one stored form (SQLite text included)."""
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    later = AT + dt.timedelta(microseconds=1)
    await driver.run(insert_then(ours, fail=False), write=True)
    async with engine.begin() as connection:
        await connection.execute(events.insert().values(id=theirs, at=later, amount=2**62))
        row = (await connection.execute(sa.select(events).where(events.c.id == ours))).one()
        # Keyset comparisons on the stored form see the driver's row as earlier.
        earlier = (
            await connection.execute(sa.select(events.c.id).where(events.c.at < later))
        ).scalars()
        assert ours in list(earlier)
    assert (row.at, row.amount) == (AT, 11)
    [(_, at, amount)] = await driver.run(get(theirs))
    assert (at, amount) == (later, 2**62) and at.tzinfo is not None


async def test_execute_many_and_concurrent_operations(driver: Driver) -> None:
    ids = [str(uuid.uuid4()) for _ in range(20)]

    def insert_all() -> Operation[None]:
        yield ExecuteMany(INSERT, [{"id": i, "at": AT, "amount": n} for n, i in enumerate(ids)])

    await driver.run(insert_all(), write=True)
    found = await asyncio.gather(*(driver.run(get(i)) for i in ids))
    assert [rows[0][2] for rows in found] == list(range(20))


async def test_a_worker_hands_each_caller_its_own_result_or_error(tmp_path) -> None:
    worker = SqliteWorker("test-sqlite", lambda: sqlite3.connect(tmp_path / "w.db"))

    def job(n: int):
        def run(connection: sqlite3.Connection) -> int:
            if n % 7 == 3:
                raise Boom(n)
            return connection.execute("SELECT ?", (n * 2,)).fetchone()[0]

        return run

    results = await asyncio.gather(
        *(worker.submit(job(n)) for n in range(100)), return_exceptions=True
    )
    for n, result in enumerate(results):
        if n % 7 == 3:
            assert isinstance(result, Boom) and result.args == (n,)
        else:
            assert result == n * 2
    await worker.stop()


async def test_a_cancelled_caller_does_not_break_the_worker(tmp_path) -> None:
    worker = SqliteWorker("test-sqlite", lambda: sqlite3.connect(tmp_path / "w.db"))
    started, release = threading.Event(), threading.Event()

    def slow(connection: sqlite3.Connection) -> int:
        started.set()
        release.wait(5)
        return 1

    waiting = asyncio.ensure_future(worker.submit(slow))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    waiting.cancel()
    release.set()
    assert await worker.submit(lambda connection: connection.execute("SELECT 2").fetchone()[0]) == 2
    await worker.stop()
