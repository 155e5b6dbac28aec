"""Fixtures shared by every test: databases on SQLite and PostgreSQL, Redis.

The helpers behind them live in tests/support/servers.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.servers import (
    REDIS_URL,
    create_postgres_database,
    drop_postgres_database,
    require_server,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """An empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
def redis_url() -> str:
    require_server(REDIS_URL, 6379, "redis")
    return REDIS_URL
