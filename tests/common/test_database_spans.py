"""The request-path driver's statement spans (common.database_spans), on a real SQLite file
and a real PostgreSQL database."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from common.driver import TracedDriver, open_driver
from common.settings import DatabaseSettings
from common.statements import Execute, Rows, Statement

METADATA = sa.MetaData()
NOTES = sa.Table("notes", METADATA, sa.Column("owner", sa.String), sa.Column("text", sa.String))
MISSING = sa.Table("missing", METADATA, sa.Column("owner", sa.String))
CREATE = "CREATE TABLE notes (owner TEXT, text TEXT)"  # DDL: not a driver statement
INSERT = Statement(NOTES.insert())
SELECT = Statement(sa.select(NOTES.c.text).where(NOTES.c.owner == sa.bindparam("owner")))
SELECT_MISSING = Statement(
    sa.select(MISSING.c.owner).where(MISSING.c.owner == sa.bindparam("owner"))
)
SECRET = "argon2-hash-of-a-password"


@pytest.fixture
async def traced(database_url: str):  # type: ignore[no-untyped-def]
    """A traced driver on an empty database with the notes table; its spans, recorded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bare = await open_driver(DatabaseSettings(database_url))
    driver = TracedDriver(bare, provider.get_tracer("t"))
    if driver.dialect_name == "sqlite":
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.execute(CREATE)
    else:
        connection = await asyncpg.connect(database_url)
        await connection.execute(CREATE)
        await connection.close()
    yield driver, provider, exporter
    await driver.close()


async def test_each_statement_is_a_client_span_under_the_current_one_without_its_values(
    traced,
) -> None:
    driver, provider, exporter = traced

    def note_and_read():  # type: ignore[no-untyped-def]
        yield Execute(INSERT, {"owner": "u1", "text": SECRET})
        return (yield Rows(SELECT, {"owner": "u1"}))

    with provider.get_tracer("t").start_as_current_span("request") as request:
        rows = await driver.run(note_and_read(), write=True)
    assert rows == [(SECRET,)]
    spans = [span for span in exporter.get_finished_spans() if span.name != "request"]
    assert [span.name for span in spans] == ["INSERT", "SELECT"]
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.attributes["db.system"] == driver.dialect_name
        assert span.attributes["db.operation"] == span.name
        statement = span.attributes["db.statement"]
        assert "?" in statement or "$1" in statement  # placeholders, never the values
        assert SECRET not in str(dict(span.attributes)) and "u1" not in str(dict(span.attributes))
        assert span.status.status_code is StatusCode.UNSET


async def test_a_failing_statement_ends_its_span_in_error(traced) -> None:
    driver, _, exporter = traced

    def read_missing():  # type: ignore[no-untyped-def]
        return (yield Rows(SELECT_MISSING, {"owner": "u1"}))

    with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedTableError)):
        await driver.run(read_missing())
    (span,) = exporter.get_finished_spans()
    assert span.name == "SELECT" and span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "_OTHER"
