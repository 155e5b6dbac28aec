"""Fixtures of the orders service tests: the real app on a fresh database, identity headers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from common.identity import Identity
from common.settings import DatabaseSettings, ServerSettings
from services.orders.app import create_app
from services.orders.settings import OrdersSettings

USER_SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write"})
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class StepClock:
    """A clock that moves one millisecond each time it is read: distinct, ordered timestamps."""

    def __init__(self, start: dt.datetime = T0, step: dt.timedelta = dt.timedelta(milliseconds=1)):
        self.now = start
        self.step = step

    def __call__(self) -> dt.datetime:
        self.now += self.step
        return self.now


class IdentityHeaders:
    """The identity headers the gateway sets after verifying a token."""

    @staticmethod
    def user(user_id: str, scopes: frozenset[str] = USER_SCOPES) -> dict[str, str]:
        identity = Identity(user_id, scopes, client_id="passgate-web", token_id=uuid.uuid4().hex)
        return identity.to_headers()

    @classmethod
    def admin(cls, user_id: str) -> dict[str, str]:
        return cls.user(user_id, USER_SCOPES | {"admin"})


@pytest.fixture
def headers() -> type[IdentityHeaders]:
    return IdentityHeaders


def orders_settings(database_url: str, **overrides) -> OrdersSettings:
    server = ServerSettings(service="orders", port=0)
    return OrdersSettings(server=server, database=DatabaseSettings(database_url, **overrides))


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
