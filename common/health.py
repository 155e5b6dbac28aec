"""Liveness (/healthz) and readiness (/readyz) endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.errors import Problem

_LOGGER = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
ReadinessDetail = Callable[[], Awaitable[str]]
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    """Named dependency checks plus a draining flag set on shutdown.

    A check returns normally when its dependency is usable and raises otherwise; the
    exception text is the reason shown to operators (it must hold no secret).
    """

    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}
        self.details: dict[str, ReadinessDetail] = {}
        self.draining = False

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def add_detail(self, name: str, detail: ReadinessDetail) -> None:
        """A dependency the process can serve without, degraded: its state (text) is
        shown under `details` in /readyz's body but never makes the process unready."""
        self.details[name] = detail

    async def describe(self) -> dict[str, str]:
        async def run(detail: ReadinessDetail) -> str:
            try:
                return await asyncio.wait_for(detail(), CHECK_TIMEOUT_SECONDS)
            except TimeoutError:
                return "degraded: timed out"
            except Exception as exc:  # a detail that cannot tell is reported, never a 500
                return f"degraded: {exc or type(exc).__name__}"

        results = await asyncio.gather(*(run(detail) for detail in self.details.values()))
        return dict(zip(self.details, results, strict=True))

    async def evaluate(self) -> dict[str, str]:
        async def run(check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
            except TimeoutError:
                return "timed out"
            except Exception as exc:  # any failure means not ready; say which
                return str(exc) or type(exc).__name__
            return "ok"

        results = await asyncio.gather(*(run(check) for check in self.checks.values()))
        return dict(zip(self.checks, results, strict=True))


# Declared beside its type (re-exported by common.app_keys) so this module never imports
# the keys module that names it: no import circle, not even a type-only one.
READINESS = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer. No dependency is checked."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every dependency check passes and the process is not draining."""
    readiness = request.app[READINESS]
    if readiness.draining:
        raise Problem(503, "shutting down", kind="not-ready", extensions={"checks": {}})
    checks = await readiness.evaluate()
    extra = {"details": await readiness.describe()} if readiness.details else {}
    if any(result != "ok" for result in checks.values()):
        raise Problem(
            503, "a dependency is unavailable", kind="not-ready", extensions={"checks": checks, **extra}
        )
    return web.json_response({"status": "ready", "checks": checks, **extra})
