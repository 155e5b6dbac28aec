"""The base application every Passgate process starts from."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from common.app_keys import HTTP_METRICS, READINESS, REGISTRY, SERVICE_NAME
from common.context import echo_request_id
from common.edge import Screen, edge_middleware
from common.health import Readiness, healthz, readyz
from common.metrics import HttpMetrics

DEFAULT_CLIENT_MAX_SIZE = 64 * 1024
# aiohttp's server would inflate gzip/deflate request bodies inside its parser, before any
# handler, and fail there on a corrupt one. No service accepts request content codings (the
# gateway refuses them with 415), so bodies are read as sent.
_HANDLER_ARGS = {"auto_decompress": False}


def make_base_app(
    service: str,
    *,
    registry: CollectorRegistry | None = None,
    middlewares: Sequence[Middleware] = (),
    screen: Screen | None = None,
    expose_metrics: bool = True,
    client_max_size: int = DEFAULT_CLIENT_MAX_SIZE,
    own_response_hook: bool = False,
) -> web.Application:
    """An app with request context, metrics, problem+json errors, /healthz, /readyz, /metrics.

    Middleware order, outermost first:
      edge             context, metrics, `screen`, problem+json errors (common.edge);
      `middlewares`    the component's own (database errors ...), inside the edge so that
                       their failures are rendered and counted too.

    Every response gets common.context's fields from an on_response_prepare hook; with
    `own_response_hook` the component's own hook calls stamp_response_fields instead (the
    gateway: one hook rather than two on every response, each costing a coroutine).
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HttpMetrics(registry)
    app = web.Application(
        middlewares=[edge_middleware(metrics, screen), *middlewares],
        client_max_size=client_max_size,
        handler_args=_HANDLER_ARGS,
    )
    app[SERVICE_NAME] = service
    app[REGISTRY] = registry
    app[HTTP_METRICS] = metrics
    app[READINESS] = Readiness()
    if not own_response_hook:
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
    admin = web.Application(middlewares=[edge_middleware(None)], handler_args=_HANDLER_ARGS)
    admin.on_response_prepare.append(echo_request_id)
    admin[READINESS] = public[READINESS]
    admin[REGISTRY] = public[REGISTRY]
    admin.router.add_get("/healthz", healthz, name="healthz")
    admin.router.add_get("/readyz", readyz, name="readyz")
    add_metrics_route(admin, public[REGISTRY])
    return admin
