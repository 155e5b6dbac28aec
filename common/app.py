"""The base application every Passgate process starts from."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from common.context import echo_request_id, request_context_middleware
from common.errors import error_middleware
from common.health import Readiness, healthz, readyz
from common.keys import HTTP_METRICS, READINESS, REGISTRY, SERVICE_NAME
from common.metrics import HttpMetrics

DEFAULT_CLIENT_MAX_SIZE = 64 * 1024


def make_base_app(
    service: str,
    *,
    registry: CollectorRegistry | None = None,
    middlewares: Sequence[Middleware] = (),
    expose_metrics: bool = True,
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE,
) -> web.Application:
    """An app with request context, metrics, problem+json errors, /healthz, /readyz, /metrics.

    Middleware order, outermost first:
      request context  binds request id and trace before anything can log;
      metrics          sees the final status of every request, errors included;
      errors           turns every failure below it into problem+json;
      `middlewares`    the component's own (auth, CORS, database errors ...).
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HttpMetrics(registry)
    app = web.Application(
        middlewares=[
            request_context_middleware,
            metrics.middleware(),
            error_middleware,
            *middlewares,
        ],
        client_max_size=client_max_size,
    )
    app[SERVICE_NAME] = service
    app[REGISTRY] = registry
    app[HTTP_METRICS] = metrics
    app[READINESS] = Readiness()
    app.on_response_prepare.append(echo_request_id)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    if expose_metrics:
        add_metrics_route(app, registry)
    return app


def add_metrics_route(app: web.Application, registry: CollectorRegistry) -> None:
    app.router.add_get("/metrics", make_aiohttp_handler(registry), name="metrics")


def make_admin_app(public: web.Application) -> web.Application:
    """The admin listener's app: /healthz, /readyz (the public app's checks) and /metrics."""
    admin = web.Application(middlewares=[request_context_middleware, error_middleware])
    admin[READINESS] = public[READINESS]
    admin[REGISTRY] = public[REGISTRY]
    admin.router.add_get("/healthz", healthz, name="healthz")
    admin.router.add_get("/readyz", readyz, name="readyz")
    add_metrics_route(admin, public[REGISTRY])
    return admin
