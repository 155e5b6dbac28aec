"""SQLAlchemy Core statements compiled once per dialect, for running straight on the driver.

Why: a request's statements through SQLAlchemy's AsyncEngine cost about 2 ms of CPU on a
`GET /orders` (bench.backends; the construct, its cache key, the execution context, the
greenlet bridge and, on SQLite, aiosqlite's thread hop for every cursor call), against a
bare aiohttp answer of about 30 us. The statements are still written in SQLAlchemy Core
over the one definition of each table (the metadata Alembic migrates); they are compiled
for each dialect once, and each call then only orders its parameters and applies the
column types' own bind and result processors (UtcDateTime keeps its one conversion).

An operation is a generator that yields steps (Rows, Execute, ExecuteMany) and receives
their results; a driver (common.driver) runs all of an operation's steps, so one operation
is one thread hop on SQLite and one pool checkout on PostgreSQL, written once for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.engine.interfaces import Dialect

T = TypeVar("T")

# The dialects whose parameter style the drivers take: sqlite3 "?", asyncpg "$1".
DIALECTS: dict[str, Dialect] = {
    "sqlite": pysqlite.dialect(),
    "postgresql": postgresql_asyncpg.dialect(),
}
# INSERT ... ON CONFLICT DO NOTHING is spelt by each dialect's own insert().
_INSERTS: dict[str, Callable[[sa.Table], Any]] = {
    "sqlite": sqlite_insert,
    "postgresql": postgresql_insert,
}

Processor = Callable[[Any], Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Compiled:
    """One statement for one dialect: its SQL text and how to convert what goes in and out."""

    sql: str
    names: tuple[str, ...]  # bind names in the order the driver takes its arguments
    defaults: Mapping[str, Any]  # values bound in the construct itself (e.g. OFFSET 0)
    bind_processors: tuple[Processor, ...]
    result_processors: tuple[Processor, ...] | None  # None when no column needs converting

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, process in zip(self.names, self.bind_processors, strict=True):
            value = params[name] if name in params else self.defaults[name]
            values.append(process(value) if process is not None and value is not None else value)
        return tuple(values)

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if self.result_processors is None:
            return [tuple(row) for row in raw]
        processors = self.result_processors
        return [
            tuple(
                value if p is None else p(value) for p, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]


class Statement:
    """A Core construct, compiled lazily for each dialect it is run on and kept.

    `build` takes the dialect's insert() (for ON CONFLICT, which each dialect spells with
    its own construct) and returns the statement; give a construct directly when it is the
    same on both.
    """

    def __init__(self, build: Callable[[Callable[[sa.Table], Any]], Any] | Any) -> None:
        self._build = build if callable(build) else None
        self._construct = None if self._build is not None else build
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect_name: str) -> Compiled:
        found = self._compiled.get(dialect_name)
        if found is None:
            found = self._compiled[dialect_name] = self._compile(dialect_name)
        return found

    def _compile(self, dialect_name: str) -> Compiled:
        dialect = DIALECTS[dialect_name]
        construct = self._construct if self._build is None else self._build(_INSERTS[dialect_name])
        compiled = construct.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        binds = compiled.binds
        columns = list(getattr(construct, "exported_columns", ()))
        results: tuple[Processor, ...] | None = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        if results is not None and all(p is None for p in results):
            results = None
        return Compiled(
            sql=compiled.string,
            names=names,
            defaults={n: binds[n].value for n in names if binds[n].value is not None},
            bind_processors=tuple(
                binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
            ),
            result_processors=results,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Rows:
    """Run a statement that returns rows (SELECT, or DML with RETURNING); get its rows."""

    statement: Statement
    params: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Execute:
    """Run a statement for its effect; get the number of rows it changed."""

    statement: Statement
    params: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ExecuteMany:
    """Run a statement once per parameter set (the driver batches them); get None."""

    statement: Statement
    params: Sequence[Mapping[str, Any]]


Step = Rows | Execute | ExecuteMany
Operation = Generator[Step, Any, T]
