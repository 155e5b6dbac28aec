"""Live reload of the routes file: on SIGHUP, and when the file changes.

The file is checked every PASSGATE_ROUTES_WATCH_SECONDS (2 s) by the identity of what its
path resolves to (device, inode, size, modification time): a Kubernetes ConfigMap update
swaps a `..data` symlink to a new directory, so the resolved file is a new inode while the
mounted path and the link's own times stay as they were. Polling needs no inotify (gone
across a symlink swap, absent on some filesystems) and costs one stat per interval.

A reload reads the file off the event loop, and applies it only when its bytes differ
from the table in service (SHA-256). It is validated exactly as at start (schema, references,
lint's errors, CORS narrowing against PASSGATE_CORS_ORIGINS); a broken file is refused with
one log line listing every problem and `gateway_route_reloads_total{result="refused"}`, and
the table in service keeps serving. A valid one is prepared whole (gateway.routing) and
swapped in: requests in flight finish on the table they started with, pools of unchanged
upstreams keep their connections, and pools replaced or removed drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

from gateway.metrics import GatewayMetrics
from gateway.routes import RoutesError, RouteTable, checked, decode_routes, read_bytes
from gateway.routing import PreparedTable, Routing, TableBuilder, file_digest
from gateway.settings import GatewaySettings

_LOGGER = logging.getLogger(__name__)

APPLIED = "applied"
UNCHANGED = "unchanged"
REFUSED = "refused"


def table_from(data: bytes, settings: GatewaySettings) -> RouteTable:
    """The routes file's table as the gateway serves it: validated, linted, with the
    environment's replica lists and discovery applied."""
    table = checked(
        decode_routes(
            data,
            source=str(settings.routes_file),
            scopes=settings.scope_policy.issuable,
            overrides=settings.upstream_overrides,
        )
    )
    if settings.discovery is None:
        return table
    upstreams = {
        name: dataclasses.replace(config, discovery=settings.discovery)
        for name, config in table.upstreams.items()
    }
    return dataclasses.replace(table, upstreams=upstreams)


class RouteReloader:
    """Reloads the routes file into `routing`, one reload at a time."""

    def __init__(
        self,
        settings: GatewaySettings,
        routing: Routing,
        builder: TableBuilder,
        metrics: GatewayMetrics,
    ) -> None:
        self._settings = settings
        self._routing = routing
        self._builder = builder
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._identity = _file_identity(settings.routes_file)

    async def start(self, table: RouteTable, data: bytes) -> None:
        """Serve `table`, the file's (`data`) as read and checked at start."""
        await self._routing.install(self._prepare(table, data))

    async def reload(self, reason: str) -> str:
        """Reload the file now; APPLIED, UNCHANGED or REFUSED (the old table serving)."""
        async with self._lock:
            try:
                data = await asyncio.to_thread(read_bytes, self._settings.routes_file)
                if file_digest(data) == self._digest:
                    result = UNCHANGED
                else:
                    # YAML, schema and lint are the slow part: off the event loop.
                    table = await asyncio.to_thread(table_from, data, self._settings)
                    await self._routing.install(self._prepare(table, data))
                    result = APPLIED
            except RoutesError as exc:
                result = REFUSED
                _LOGGER.error(
                    "routes reload (%s) refused; the routes in service stay: %s",
                    reason, "; ".join(exc.problems),
                )
            except Exception:  # noqa: BLE001 - whatever fails, the table in service stays
                result = REFUSED  # and the watcher lives on to take the next file
                _LOGGER.exception("routes reload (%s) failed; the routes in service stay", reason)
            self._metrics.route_reloads.labels(result).inc()
            if result == APPLIED:
                _LOGGER.info("routes reloaded (%s): sha256 %s", reason, self._digest[:12])
            return result

    def _prepare(self, table: RouteTable, data: bytes) -> PreparedTable:
        digest = file_digest(data)
        prepared = self._builder.build(table, digest, self._routing.current)
        self._show(digest)
        return prepared

    @property
    def _digest(self) -> str | None:
        current = self._routing.current
        return current.digest if current is not None else None

    def _show(self, digest: str) -> None:
        info = self._metrics.route_table_info
        previous = self._digest
        if previous is not None and previous != digest:
            with contextlib.suppress(KeyError):
                info.remove(previous[:12])
        info.labels(digest[:12]).set(1)
        self._metrics.route_table_loaded.set(time.time())

    async def watch(self) -> None:
        """Reload whenever the resolved file's identity changes, checked every interval."""
        interval = self._settings.routes_watch_seconds
        while True:
            await asyncio.sleep(interval)
            identity = _file_identity(self._settings.routes_file)
            if identity is None or identity == self._identity:
                continue  # a file missing for a moment (mid-swap) is looked at again later
            self._identity = identity
            await self.reload("the routes file changed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Watch the file (unless the interval is 0) and reload on SIGHUP while in the block."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[str]] = set()

        def on_hangup() -> None:
            task = asyncio.create_task(self.reload("SIGHUP"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        hangup = _add_signal_handler(loop, on_hangup)
        watcher = (
            asyncio.create_task(self.watch(), name="routes-watch")
            if self._settings.routes_watch_seconds > 0
            else None
        )
        try:
            yield
        finally:
            if hangup:
                loop.remove_signal_handler(signal.SIGHUP)
            for task in [*tasks, *([watcher] if watcher else [])]:
                task.cancel()
            await asyncio.gather(*tasks, *([watcher] if watcher else []), return_exceptions=True)


def _file_identity(path: os.PathLike[str] | str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: the file a ConfigMap's links resolve to
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _add_signal_handler(loop: asyncio.AbstractEventLoop, callback: object) -> bool:
    """Reload on SIGHUP where the loop can take signals (the main thread, not Windows)."""
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)  # type: ignore[arg-type]
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        return False
    return True
