"""Serve one or more apps until SIGTERM or SIGINT, then drain and stop gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from aiohttp import web

from common.app import make_admin_app
from common.app_keys import READINESS
from common.logging import JsonAccessLogger
from common.settings import ServerSettings

_LOGGER = logging.getLogger(__name__)

Listener = tuple[web.Application, str, int]


def listeners(app: web.Application, settings: ServerSettings) -> list[Listener]:
    """The public listener, plus the admin one (health and metrics) when it has a port."""
    public = [(app, settings.host, settings.port)]
    if settings.admin_port is None:
        return public
    return [*public, (make_admin_app(app), settings.admin_host, settings.admin_port)]


async def serve(listeners: Sequence[Listener], settings: ServerSettings) -> None:
    """Start every listener, wait for a stop signal, then shut down in order.

    Order on SIGTERM: readiness turns false at once; requests keep being served for
    drain_seconds so that whoever balances load notices; then the sockets close and
    in-flight requests get up to shutdown_timeout to finish.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runners: list[web.AppRunner] = []
    try:
        for app, host, port in listeners:
            runner = web.AppRunner(
                app,
                access_log_class=JsonAccessLogger,
                shutdown_timeout=settings.shutdown_timeout,
                # aiohttp closes a connection that has not sent a whole request head this
                # long after opening or after its last answer: partial heads do not reset it.
                keepalive_timeout=settings.request_head_timeout,
            )
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(
                runner,
                host,
                port,
                shutdown_timeout=settings.shutdown_timeout,
                reuse_port=settings.reuse_port or None,
            )
            await site.start()
            _LOGGER.info("listening", extra={"host": host, "port": port})
        await stop.wait()
        _LOGGER.info("stopping", extra={"drain_seconds": settings.drain_seconds})
        for app, _, _ in listeners:
            app[READINESS].draining = True
        if settings.drain_seconds:
            await asyncio.sleep(settings.drain_seconds)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        _LOGGER.info("stopped")


def run(listeners: Sequence[Listener], settings: ServerSettings) -> None:
    with asyncio.Runner(loop_factory=event_loop_factory(settings.event_loop)) as runner:
        runner.run(serve(listeners, settings))


def event_loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (it lowered CPU per request in every process
    measured, see bench/RESULTS.md), else asyncio's own; "asyncio" chooses asyncio's."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
