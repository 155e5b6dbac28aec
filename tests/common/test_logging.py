"""JSON logs: one object a line, request and trace ids bound, no query strings in access lines."""

from __future__ import annotations

import io
import json
import logging

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.logging import JsonAccessLogger, JsonFormatter, configure_logging


async def test_log_lines_are_json_with_request_and_trace_ids(aiohttp_server, aiohttp_client) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("passgate.test.handler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    access = logging.getLogger("passgate.test.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)

    async def hello(request: web.Request) -> web.Response:
        logger.info("handling", extra={"items": 3})
        return web.json_response({})

    app = make_base_app("test", registry=CollectorRegistry())
    app.router.add_get("/hello/{name}", hello)
    server = await aiohttp_server(app, access_log_class=JsonAccessLogger, access_log=access)
    client = await aiohttp_client(server)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.get(
        "/hello/x?password=hunter2&token=abc",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-Id": "abcdefgh-1"},
    )
    assert response.status == 200
    await client.close()  # the access line is written once the response is done
    logger.removeHandler(handler)
    access.removeHandler(handler)

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    handled = next(e for e in entries if e["msg"] == "handling")
    assert handled["request_id"] == "abcdefgh-1" and handled["trace_id"] == trace_id
    assert handled["items"] == 3 and handled["service"] == "test"
    line = next(e for e in entries if e.get("access"))
    assert line["route"] == "/hello/{name}" and line["status"] == 200
    assert line["trace_id"] == trace_id and line["path"] == "/hello/x"
    assert "hunter2" not in stream.getvalue() and "token=abc" not in stream.getvalue()


def test_database_loggers_never_log_statements() -> None:
    """At any level, SQL statements and their parameters (hashes) stay out of the logs."""
    root = logging.getLogger()
    names = ("aiosqlite", "asyncpg", "sqlalchemy")
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in names}
    try:
        configure_logging("test", "DEBUG")
        for name in (*names, "sqlalchemy.engine.Engine"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
