"""Fixtures of the orders service tests: the real app on a fresh database, identity headers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from common.settings import DatabaseSettings, ServerSettings
from services.orders.app import create_app
from services.orders.settings import OrdersSettings
from tests.support.clock import StepClock
from tests.support.identity_headers import IdentityHeaders, trust_settings


@pytest.fixture
def headers() -> type[IdentityHeaders]:
    return IdentityHeaders


def orders_settings(database_url: str, **overrides) -> OrdersSettings:
    server = ServerSettings(service="orders", port=0)
    return OrdersSettings(
        server=server,
        database=DatabaseSettings(database_url, **overrides),
        assertion=trust_settings(),
    )


@pytest.fixture
def make_orders_settings() -> Callable[..., OrdersSettings]:
    return orders_settings


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
async def orders_client(aiohttp_client, tmp_path, clock):
    """The real orders app on a fresh SQLite database; `.registry` is its metrics registry."""
    registry = CollectorRegistry()
    app = create_app(
        orders_settings(f"sqlite:///{tmp_path / 'orders.db'}"), registry=registry, clock=clock
    )
    client = await aiohttp_client(app)
    client.registry = registry
    return client
