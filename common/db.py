"""One storage code path for SQLite (the embedded default) and PostgreSQL (asyncpg).

Services use SQLAlchemy Core on an AsyncEngine; schemas are versioned with Alembic, each
service keeping its own revisions in `<service>/migrations`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiohttp import web
from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.app_keys import READINESS
from common.errors import Problem
from common.settings import DatabaseSettings

_LOGGER = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).with_name("alembic")


def normalize_url(url: str) -> sa.URL:
    """Accept plain `sqlite:///` and `postgresql://` URLs and pick the async drivers."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def is_sqlite(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    # create_async_engine is looked up on its module at each call: with tracing on, the
    # SQLAlchemy instrumentation (common.telemetry) has replaced it there.
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            prepare_sqlite_file(parsed.database)
        engine = sa_asyncio.create_async_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return sa_asyncio.create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=5,
        # asyncpg: give up on a dead server quickly so requests fail fast with 503.
        connect_args={"timeout": 5, "command_timeout": 15},
    )


def prepare_sqlite_file(path: str) -> None:
    """Make the file's directory and put the file in WAL mode, before any connection uses it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _use_wal(path)


def _use_wal(path: str) -> None:
    """Put the file in WAL mode (readers proceed during a write), once, before serving.

    WAL is a property of the file, kept across connections. Switching needs a lock that
    SQLite does not wait for even with a busy timeout, and replicas starting together
    contend for it; so this retries, at start, before the engine is used.
    """
    deadline = time.monotonic() + 10
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as connection:
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    set_up_sqlite_connection(dbapi_connection)


def set_up_sqlite_connection(dbapi_connection: Any) -> None:
    """The settings every SQLite connection of a service has (SQLAlchemy's and the driver's)."""
    # The sqlite3 module's own transaction handling defers BEGIN to the first write and
    # never wraps DDL; turn it off and say BEGIN ourselves (SQLAlchemy's begin event below).
    dbapi_connection.isolation_level = None
    # busy_timeout makes writers queue, not fail; the file is in WAL mode (see _use_wal).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # A write transaction takes the write lock at BEGIN (IMMEDIATE), so a read-then-write
    # cannot fail half-way with SQLITE_BUSY when another writer got there first.
    mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


_SQLITE_BEGIN = "passgate_sqlite_begin"


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: on SQLite it holds the write lock from its start."""
    async with engine.connect() as connection:
        if is_sqlite(connection):
            await connection.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        async with connection.begin():
            yield connection


def _alembic_config(versions_dir: Path, connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("version_locations", str(versions_dir))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine, versions_dir: Path) -> None:
    """Bring the schema to the newest revision; safe when several replicas start at once."""

    def upgrade(connection: sa.Connection) -> None:
        command.upgrade(_alembic_config(versions_dir, connection), "head")

    async with write_transaction(engine) as connection:
        if not is_sqlite(connection):
            # Replicas starting together queue here; the first migrates, the rest find head.
            lock_id = zlib.crc32(str(versions_dir.resolve()).encode())
            await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        await connection.run_sync(upgrade)


async def migrate_database(database: DatabaseSettings, versions_dir: Path) -> None:
    """The `migrate` command of a service: bring its database to head, then let go."""
    engine = create_engine(database.url, pool_size=1)
    try:
        await migrate(engine, versions_dir)
    finally:
        await engine.dispose()


def database_ctx(
    database: DatabaseSettings,
    versions_dir: Path,
    store: Callable[[web.Application, AsyncEngine], None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context owning the engine: migrate, register readiness, dispose at exit."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(database.url, pool_size=database.pool_size)
        if database.migrate_on_start:
            await migrate(engine, versions_dir)
        store(app, engine)

        async def database_ready() -> None:
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))

        app[READINESS].add("database", database_ready)
        try:
            yield
        finally:
            await engine.dispose()

    return ctx


# What a lost, refused, overloaded or timed-out database raises through the drivers the
# request path uses directly (common.driver); anything else (an integrity or syntax error)
# is a bug and stays a 500.
DRIVER_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,  # locked past busy_timeout, unreadable file, disk I/O
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the connection went away under a call
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin or crash shutdown
    OSError,
    TimeoutError,
)


def _unavailable() -> Problem:
    return Problem(
        503,
        "the service's database is unavailable; retry shortly",
        kind="database-unavailable",
        headers={"Retry-After": "2"},
    )


@web.middleware
async def database_unavailable_middleware(
    request: web.Request, handler: web.RequestHandler
) -> web.StreamResponse:
    """Answer 503 problem+json while the database is unreachable, instead of a 500."""
    try:
        return await handler(request)
    except exc.DBAPIError as error:
        # Lost or refused connections; an IntegrityError and the like are the caller's bug.
        lost = error.connection_invalidated or isinstance(
            error, (exc.OperationalError, exc.InterfaceError)
        )
        if not lost:
            raise
        _LOGGER.warning("database unavailable: %s", type(error.orig).__name__)
        raise _unavailable() from None
    except (exc.TimeoutError, *DRIVER_UNAVAILABLE_ERRORS) as error:
        # Pool exhausted, connect refused or timed out, connection lost under a call.
        _LOGGER.warning("database unavailable: %s", type(error).__name__)
        raise _unavailable() from None


def dialect_insert(connection: AsyncConnection, table: sa.Table) -> Any:
    """An INSERT with `on_conflict_do_nothing()` (ON CONFLICT DO NOTHING), same call on both dialects."""
    if is_sqlite(connection):
        return sqlite_insert(table)
    return postgresql_insert(table)
