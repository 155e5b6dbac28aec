"""Liveness (/healthz) and readiness (/readyz) endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.errors import Problem
from common.keys import READINESS

_LOGGER = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    """Named dependency checks plus a draining flag set on shutdown.

    A check returns normally when its dependency is usable and raises otherwise; the
    exception text is the reason shown to operators (it must hold no secret).
    """

    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}
        self.draining = False

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

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


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process and its event loop answer. No dependency is checked."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every dependency check passes and the process is not draining."""
    readiness = request.app[READINESS]
    if readiness.draining:
        raise Problem(503, "shutting down", kind="not-ready", extensions={"checks": {}})
    checks = await readiness.evaluate()
    if any(result != "ok" for result in checks.values()):
        raise Problem(503, "a dependency is unavailable", kind="not-ready", extensions={"checks": checks})
    return web.json_response({"status": "ready", "checks": checks})
