"""The users service application: profiles, keyed by the token subject."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app_keys import REGISTRY
from common.driver import Driver
from common.resource_app import make_resource_app
from common.timestamps import Clock, utc_now
from common.validation import OpenApiDocument
from services.users.app_keys import METRICS, OPENAPI, REPOSITORY
from services.users.metrics import UsersMetrics
from services.users.repository import ProfileRepository
from services.users.routes import setup_routes
from services.users.settings import SERVICE, UsersSettings

PACKAGE_DIR = Path(__file__).parent
OPENAPI_PATH = PACKAGE_DIR / "openapi.yaml"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def create_app(
    settings: UsersSettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock = utc_now,
) -> web.Application:
    def store(app: web.Application, driver: Driver) -> None:
        app[REPOSITORY] = ProfileRepository(driver, clock=clock)

    app = make_resource_app(
        SERVICE, settings, registry=registry, migrations_dir=MIGRATIONS_DIR, store=store
    )
    app[OPENAPI] = OpenApiDocument.load(OPENAPI_PATH)
    app[METRICS] = UsersMetrics(app[REGISTRY])
    setup_routes(app)
    return app
