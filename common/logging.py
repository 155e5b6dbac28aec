"""JSON logs: one object a line, with the request id, trace id and user id of the request."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from common.context import request_id_var, trace_id_var, user_id_var
from common.keys import IDENTITY, REQUEST_ID, TRACE
from common.metrics import route_label

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged too.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (
            ("request_id", request_id_var),
            ("trace_id", trace_id_var),
            ("user_id", user_id_var),
        ):
            value = var.get()
            if value is not None:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stdout as JSON; called once, from a component's __main__."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # SQLAlchemy logs statements with their parameters at INFO, aiosqlite at DEBUG, and
    # parameters hold password and token hashes: keep them at WARNING whatever is asked.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class JsonAccessLogger(AbstractAccessLogger):
    """One access line a request: path without its query string, which may carry secrets."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        identity = request.get(IDENTITY)
        trace = request.get(TRACE)
        route = route_label(request) if isinstance(request, web.Request) else "unmatched"
        self.logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status,
            extra={
                "access": True,
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "request_id": request.get(REQUEST_ID),
                "trace_id": trace.trace_id if trace else None,
                "user_id": identity.subject if identity else None,
                "remote": request.remote,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
