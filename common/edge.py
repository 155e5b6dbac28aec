"""The one middleware of every Passgate process: what each request gets on the way in and out.

In order, as plain calls in one function rather than a chain of middlewares (each level of
a chain costs a coroutine and a frame on every request, which showed in the gateway's
profile):

  1. context   request id and trace bound before anything can log (common.context);
  2. metrics   the in-flight gauge, then the final status and duration of every request,
               errors included (common.metrics);
  3. screen    the component's own refusals before any handler runs (the gateway refuses
               ambiguous paths there);
  4. handler   the route's own work;
  5. errors    every failure below rendered as problem+json, never a traceback
               (common.errors).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from common.context import bind_request_context
from common.errors import error_response
from common.metrics import HttpMetrics

Screen = Callable[[web.Request], None]


def edge_middleware(metrics: HttpMetrics | None, screen: Screen | None = None) -> Middleware:
    """The middleware above: `metrics` None on listeners that are not counted (admin)."""

    @web.middleware
    async def edge(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        bind_request_context(request)
        start = time.perf_counter()
        status = 500  # what a request cancelled or broken off mid-way counts as
        if metrics is not None:
            metrics.in_flight += 1
        try:
            try:
                if screen is not None:
                    screen(request)
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    status = exc.status
                    raise  # redirects and other non-errors pass through untouched
                response = error_response(request, exc)
            except Exception as exc:  # noqa: BLE001 - rendered, and logged when unexpected
                response = error_response(request, exc)
            status = response.status
            return response
        finally:
            if metrics is not None:
                metrics.in_flight -= 1
                metrics.observe(request, status, time.perf_counter() - start)

    return edge
