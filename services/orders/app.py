"""The orders service application: each user's orders."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.app_keys import REGISTRY
from common.assertion import install_verifier
from common.db import database_unavailable_middleware
from common.driver import Driver, driver_ctx
from common.timestamps import Clock, utc_now
from common.validation import OpenApiDocument
from services.orders.app_keys import METRICS, OPENAPI, REPOSITORY
from services.orders.metrics import OrdersMetrics
from services.orders.repository import OrderRepository
from services.orders.routes import setup_routes
from services.orders.settings import SERVICE, OrdersSettings

PACKAGE_DIR = Path(__file__).parent
OPENAPI_PATH = PACKAGE_DIR / "openapi.yaml"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def create_app(
    settings: OrdersSettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock = utc_now,
) -> web.Application:
    # The base app's middlewares come first; ours is innermost: a lost database becomes a
    # 503 problem (and readiness false) instead of a 500.
    app = make_base_app(
        SERVICE,
        registry=registry,
        middlewares=[database_unavailable_middleware],
        expose_metrics=settings.server.admin_port is None,
    )
    install_verifier(app, settings.assertion)
    app[OPENAPI] = OpenApiDocument.load(OPENAPI_PATH)
    app[METRICS] = OrdersMetrics(app[REGISTRY])

    def store(app: web.Application, driver: Driver) -> None:
        app[REPOSITORY] = OrderRepository(driver, clock=clock)

    app.cleanup_ctx.append(driver_ctx(settings.database, MIGRATIONS_DIR, store))
    setup_routes(app)
    return app
