"""Fixtures of the users service tests: the real app on a fresh database, identity headers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from common.settings import DatabaseSettings, ServerSettings
from services.users.app import create_app
from services.users.settings import UsersSettings
from tests.support.identity_headers import IdentityHeaders, trust_settings


@pytest.fixture
def headers() -> type[IdentityHeaders]:
    return IdentityHeaders


def users_settings(database_url: str, **overrides) -> UsersSettings:
    server = ServerSettings(service="users", port=0)
    return UsersSettings(
        server=server,
        database=DatabaseSettings(database_url, **overrides),
        assertion=trust_settings(),
    )


@pytest.fixture
def make_users_settings() -> Callable[..., UsersSettings]:
    return users_settings


@pytest.fixture
async def users_client(aiohttp_client, tmp_path):
    """The real users app on a fresh SQLite database; `.registry` is its metrics registry."""
    registry = CollectorRegistry()
    app = create_app(users_settings(f"sqlite:///{tmp_path / 'users.db'}"), registry=registry)
    client = await aiohttp_client(app)
    client.registry = registry
    return client


@pytest.fixture
def provision(users_client) -> Callable[..., Awaitable[str]]:
    """Create a profile the way the auth service does at registration; return its id."""

    async def create(username: str, display_name: str | None = None) -> str:
        user_id = str(uuid.uuid4())
        response = await users_client.put(
            f"/internal/profiles/{user_id}",
            json={"username": username, "display_name": display_name},
            headers=IdentityHeaders.provisioner(user_id),
        )
        assert response.status == 201, await response.text()
        return user_id

    return create
