"""JSON logs: one object a line, with the request id, trace id and user id of the request."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, TextIO

import orjson  # about a third of json.dumps's cost per access line
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from common.context import request_id_var, trace_id_var, user_id_var
from common.metrics import UNMATCHED_ROUTE, route_label

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged too.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# Seconds between writes of pending log lines: the most a line waits before it is written.
FLUSH_INTERVAL = 0.1
# A batch this large is written at once rather than waiting for the interval.
MAX_PENDING_LINES = 512


# ".000+00:00" to ".999+00:00": a timestamp's tail by its milliseconds, looked up rather than
# formatted (a format specification is parsed on every use).
_MILLISECONDS = tuple(f".{ms:03d}+00:00" for ms in range(1000))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        # The "YYYY-MM-DDTHH:MM:SS" part of the timestamp, kept for the second it names:
        # formatting a datetime for every line cost as much as the rest of the line.
        self._second = -1
        self._second_text = ""
        self._access_openings: dict[str, str] = {}  # logger name -> the fixed fields

    def timestamp(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds, as datetime.isoformat(timespec="milliseconds")."""
        second = int(created)
        micros = round((created - second) * 1e6)  # datetime rounds to microseconds first
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text + _MILLISECONDS[micros // 1000]

    def access_opening(self, created: float, logger: str) -> str:
        """An INFO line of `logger` up to its "msg" value: what format() would open it with."""
        fixed = self._access_openings.get(logger)
        if fixed is None:
            service, name = orjson.dumps(self.service).decode(), orjson.dumps(logger).decode()
            fixed = self._access_openings[logger] = f',"level":"info","service":{service},"logger":{name},"msg":'
        return f'{{"ts":"{self.timestamp(created)}"{fixed}'

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.timestamp(record.created),
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
        return orjson.dumps(entry, default=str).decode()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes pending lines together, in one write(2) per batch.

    A plain StreamHandler flushes after every record: one system call per access line,
    which cost a busy gateway more than the line's formatting. Here lines wait in memory
    for at most FLUSH_INTERVAL (a daemon thread writes them), or until MAX_PENDING_LINES
    are pending; a WARNING or worse is written at once, with everything before it, and
    logging.shutdown() (at exit) flushes the rest. Each batch holds whole lines only.
    """

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._closed = threading.Event()
        self._interval = interval
        threading.Thread(target=self._flush_periodically, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle() holds the handler's lock around emit(): no other thread appends.
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(self._pending) >= MAX_PENDING_LINES:
            self.flush()

    def queue(self, line: str) -> None:
        """Queue a line formatted elsewhere (INFO level: written with the next batch)."""
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            full = len(self._pending) >= MAX_PENDING_LINES
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                return
            data = "".join(self._pending)
            self._pending.clear()
            try:
                self.stream.write(data)
                self.stream.flush()
            except Exception:
                pass  # like StreamHandler: a closed or broken stdout must not stop the service

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stdout as JSON; called once, from a component's __main__."""
    global _SINK
    handler = BatchingStreamHandler(sys.stdout)
    formatter = JsonFormatter(service)
    handler.setFormatter(formatter)
    _SINK = (handler, formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # SQLAlchemy logs statements with their parameters at INFO, aiosqlite at DEBUG, and
    # parameters hold password and token hashes: keep them at WARNING whatever is asked.
    for name in ("aiosqlite", "asyncpg", "sqlalchemy"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class JsonAccessLogger(AbstractAccessLogger):
    """One access line a request: path without its query string, which may carry secrets.

    When the process logs through configure_logging's handler (every served process), the
    line is built here and queued on that handler directly: a LogRecord, the handler chain
    and the formatter cost more than the line itself on a busy gateway. The line is the one
    the logging route would write; elsewhere (tests with their own handlers) it takes that
    route.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        method, path, status = request.method, request.path, response.status
        try:
            route = route_label(request)  # type: ignore[arg-type]
        except AttributeError:  # a bare request aiohttp refused before any routing
            route = UNMATCHED_ROUTE
        # The request's ids and user come from the context variables its handler bound
        # (common.context): this runs in the request's own task, after the handler, and a
        # variable is far cheaper to read than the request's mapping.
        fields = {
            "access": True,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(time * 1_000_000) / 1000,  # to the microsecond
            "request_id": request_id_var.get(),
            "trace_id": trace_id_var.get(),
            "user_id": user_id_var.get(),
            "remote": request.remote,
        }
        sink = _SINK
        if sink is None or self.logger.handlers or not self.logger.propagate:
            self.logger.info("%s %s %s", method, path, status, extra=fields)
            return
        handler, formatter = sink
        # The line the logging route would write; its fixed fields are made once per logger.
        opening = formatter.access_opening(_now(), self.logger.name)
        msg = orjson.dumps(f"{method} {path} {status}")
        body = orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)
        handler.queue(f"{opening}{msg.decode()},{body.decode()[1:]}")

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


# The handler and formatter configure_logging installed, for JsonAccessLogger's direct path.
_SINK: tuple[BatchingStreamHandler, JsonFormatter] | None = None
_now = time.time
