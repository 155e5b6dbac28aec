"""The application every database-owning resource service (users, orders) starts from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.assertion import install_verifier
from common.db import database_unavailable_middleware
from common.driver import Driver, driver_ctx
from common.settings import DatabaseServiceSettings


def make_resource_app(
    service: str,
    settings: DatabaseServiceSettings,
    *,
    registry: CollectorRegistry | None,
    migrations_dir: Path,
    store: Callable[[web.Application, Driver], None],
) -> web.Application:
    """The base app, identities taken only from signed assertions, and a database driver
    opened (migrated first when configured) on start and handed to `store`.

    The base app's middlewares come first; the database one is innermost: a lost database
    becomes a 503 problem (and readiness false) instead of a 500.
    """
    app = make_base_app(
        service,
        registry=registry,
        middlewares=[database_unavailable_middleware],
        expose_metrics=settings.server.admin_port is None,
    )
    install_verifier(app, settings.assertion)
    app.cleanup_ctx.append(driver_ctx(settings.database, migrations_dir, store))
    return app
