"""A CLIENT span for every statement the request-path driver (common.driver) runs: its
TracedDriver passes each operation through `traced_operation` when tracing is on.

No instrumentation library sees these statements: they run straight on sqlite3 (on a
worker thread) and asyncpg, compiled once by common.statements. So the span is made here,
around each step of an operation, with the database semantic conventions that the
SQLAlchemy instrumentation (auth's engine) uses too: `db.system`, `db.operation`,
`db.statement`. The statement is the compiled text with its placeholders (`?`, `$1`):
parameter values, which hold password hashes and token hashes, are never recorded.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from common.statements import Operation, Step

T = TypeVar("T")


def traced_operation(
    operation: Operation[T], tracer: Tracer, dialect: str, parent: Context
) -> Generator[Step, Any, T]:
    """`operation`'s steps, each inside a span from when it is handed to the driver until
    its result comes back. The driver closes the operation when a statement fails: the
    span then ends with an error status."""
    result: Any = None
    try:
        while True:
            try:
                step = operation.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            sql = step.statement.compiled(dialect).sql
            verb = sql.split(None, 1)[0].upper() if sql.strip() else "SQL"
            span = tracer.start_span(
                verb,
                context=parent,
                kind=SpanKind.CLIENT,
                attributes={"db.system": dialect, "db.operation": verb, "db.statement": sql},
            )
            try:
                result = yield step
            except BaseException:
                span.set_attribute("error.type", "_OTHER")
                span.set_status(Status(StatusCode.ERROR, "the statement failed"))
                raise
            finally:
                span.end()
    finally:
        operation.close()
