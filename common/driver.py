"""Run a service's request-path operations straight on the database driver.

Each operation (a generator of steps, see common.statements) runs whole in one place:
- SQLite: on a thread owning its sqlite3 connection (common.sqlite_worker), all of an
  operation's statements in one hop off the event loop (aiosqlite hops per cursor call);
- PostgreSQL: on one asyncpg connection checked out of a pool (common.pg_pool); asyncpg
  prepares each statement once per connection and keeps it.
A write operation runs in a transaction (on SQLite it takes the write lock at BEGIN, so a
read-then-write cannot fail half-way with SQLITE_BUSY); a read runs in one snapshot.

Schema migrations, and the auth service, keep SQLAlchemy's AsyncEngine (common.db).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry.trace import Tracer

from common.app_keys import READINESS
from common.database_spans import traced_operation
from common.db import migrate_database, normalize_url, prepare_sqlite_file, set_up_sqlite_connection
from common.pg_pool import ConnectionPool
from common.settings import DatabaseSettings
from common.sqlite_worker import SqliteWorker
from common.statements import Execute, Operation, Rows, Step
from common.telemetry import TRACER

T = TypeVar("T")

# Seconds to wait for a PostgreSQL connection, and for one statement, before giving up
# (then the request answers 503 rather than hanging).
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0


class Driver(Protocol):
    dialect_name: str

    async def run(
        self, operation: Operation[T], *, write: bool = False, one_statement: bool = False
    ) -> T:
        """Run all of `operation`'s steps; with `write`, in one transaction.

        `one_statement`: the operation runs exactly one statement, atomic by itself, so
        PostgreSQL needs no BEGIN and COMMIT around it.
        """
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


async def open_driver(database: DatabaseSettings) -> Driver:
    """A driver for the service's database; it connects on first use, not here."""
    url = normalize_url(database.url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            # Each worker thread would open its own, empty, in-memory database.
            raise ValueError("the request path needs a SQLite file, not :memory:")
        # Switching to WAL may wait for other replicas' locks: not on the event loop.
        await asyncio.get_running_loop().run_in_executor(None, prepare_sqlite_file, url.database)
        return SqliteDriver(url.database)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    # pool_size connections, as many again under load: what the setting has always meant.
    return await PostgresDriver.create(dsn, max_size=2 * database.pool_size)


def driver_ctx(
    database: DatabaseSettings,
    versions_dir: Path,
    store: Callable[[web.Application, Driver], None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context owning the request path's driver: migrate, register readiness, close."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if database.migrate_on_start:
            await migrate_database(database, versions_dir)
        driver = await open_driver(database)
        tracer = app.get(TRACER)  # decided once: with tracing off the driver is bare
        if tracer is not None:
            driver = TracedDriver(driver, tracer)
        store(app, driver)
        app[READINESS].add("database", driver.ping)
        try:
            yield
        finally:
            await driver.close()

    return ctx


class TracedDriver:
    """`driver` with a span per statement (common.database_spans), children of the span
    current when `run` is called: the request's server span."""

    def __init__(self, driver: Driver, tracer: Tracer) -> None:
        self._driver = driver
        self._tracer = tracer
        self.dialect_name = driver.dialect_name

    async def run(
        self, operation: Operation[T], *, write: bool = False, one_statement: bool = False
    ) -> T:
        # The steps may run on a SQLite worker thread: the parent is taken here, on the loop.
        traced = traced_operation(
            operation, self._tracer, self.dialect_name, otel_context.get_current()
        )
        return await self._driver.run(traced, write=write, one_statement=one_statement)

    async def ping(self) -> None:
        await self._driver.ping()

    async def close(self) -> None:
        await self._driver.close()


class SqliteDriver:
    """Reads on one thread and writes on another, each with its own sqlite3 connection.

    One of each is enough: the GIL runs one thread's Python at a time anyway, a file takes
    one writer at a time (BEGIN IMMEDIATE), and in WAL mode reads never wait for the writer,
    so a write queued behind another replica's lock does not hold up reads.
    """

    dialect_name = "sqlite"

    def __init__(self, path: str) -> None:
        """`path`: a file already prepared by common.db.prepare_sqlite_file (WAL mode)."""
        self._reader = SqliteWorker("sqlite-reader", lambda: _connect(path))
        self._writer = SqliteWorker("sqlite-writer", lambda: _connect(path))

    async def run(
        self, operation: Operation[T], *, write: bool = False, one_statement: bool = False
    ) -> T:
        worker = self._writer if write else self._reader
        return await worker.submit(lambda connection: _run_sqlite(connection, operation, write))  # type: ignore[no-any-return]

    async def ping(self) -> None:
        await self._reader.submit(lambda connection: connection.execute("SELECT 1").fetchall())

    async def close(self) -> None:
        await self._reader.stop()
        await self._writer.stop()


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30)
    set_up_sqlite_connection(connection)
    return connection


def _run_sqlite(connection: sqlite3.Connection, operation: Operation[T], write: bool) -> T:
    connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result: Any = None
        while True:
            try:
                step = operation.send(result)
            except StopIteration as done:
                connection.execute("COMMIT")
                return done.value  # type: ignore[no-any-return]
            result = _sqlite_step(connection, step)
    except BaseException:
        operation.close()
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _sqlite_step(connection: sqlite3.Connection, step: Step) -> Any:
    compiled = step.statement.compiled("sqlite")
    if isinstance(step, Rows):
        return compiled.rows(
            connection.execute(compiled.sql, compiled.arguments(step.params)).fetchall()
        )
    if isinstance(step, Execute):
        return connection.execute(compiled.sql, compiled.arguments(step.params)).rowcount
    connection.executemany(compiled.sql, [compiled.arguments(p) for p in step.params])
    return None


class PostgresDriver:
    """Operations on connections from a pool (common.pg_pool); asyncpg keeps each
    statement prepared per connection."""

    dialect_name = "postgresql"

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    @classmethod
    async def create(cls, dsn: str, *, max_size: int) -> PostgresDriver:
        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
            )

        return cls(ConnectionPool(connect, max_size=max_size, acquire_timeout=CONNECT_TIMEOUT))

    async def run(
        self, operation: Operation[T], *, write: bool = False, one_statement: bool = False
    ) -> T:
        connection = await self._pool.acquire()
        reusable = False
        try:
            if not write or one_statement:
                # Autocommit statements: the read operations are one statement each, and
                # READ COMMITTED would give a multi-statement one no more than that anyway.
                result = await _run_on(connection, operation, most_steps=1 if write else None)
            else:
                async with connection.transaction():
                    result = await _run_on(connection, operation)
            reusable = True
            return result
        except Exception as error:
            # The operation's own exceptions (a conflict, a constraint the database refused)
            # leave the connection clean, its transaction rolled back; a lost connection or
            # a timed-out call may not: it is closed. So is one left by a cancelled request.
            reusable = not isinstance(error, _CONNECTION_SUSPECT)
            raise
        finally:
            self._pool.release(connection, reusable=reusable)

    async def ping(self) -> None:
        connection = await self._pool.acquire()
        reusable = False
        try:
            await connection.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
            reusable = True
        finally:
            self._pool.release(connection, reusable=reusable)

    async def close(self) -> None:
        await self._pool.close(CONNECT_TIMEOUT)


_CONNECTION_SUSPECT = (
    TimeoutError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)


async def _run_on(
    connection: asyncpg.Connection, operation: Operation[T], most_steps: int | None = None
) -> T:
    result: Any = None
    steps = 0
    try:
        while True:
            try:
                step = operation.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            steps += 1
            if most_steps is not None and steps > most_steps:
                raise RuntimeError(
                    "a one-statement write ran a second statement outside a transaction"
                )
            compiled = step.statement.compiled("postgresql")
            if isinstance(step, Rows):
                result = compiled.rows(
                    await connection.fetch(compiled.sql, *compiled.arguments(step.params))
                )
            elif isinstance(step, Execute):
                status = await connection.execute(compiled.sql, *compiled.arguments(step.params))
                result = int(status.rsplit(" ", 1)[1])  # "UPDATE 1", "INSERT 0 1"
            else:
                await connection.executemany(
                    compiled.sql, [compiled.arguments(p) for p in step.params]
                )
                result = None
    finally:
        operation.close()
