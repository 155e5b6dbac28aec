"""The PostgreSQL and Redis servers tests use: where they are, and a database per test.

PostgreSQL and Redis tests skip with a reason when the server is unreachable, unless
PASSGATE_REQUIRE_SERVICES=1 (set by CI) makes them required.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest

POSTGRES_URL = os.environ.get(
    "PASSGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PASSGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("PASSGATE_REQUIRE_SERVICES") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 1):
            return True
    except OSError:
        return False


def require_server(url: str, default_port: int, what: str) -> None:
    """Skip (or fail, where CI requires it) when a server the test needs is not there."""
    if _reachable(url, default_port):
        return
    message = f"{what} not reachable at {urlsplit(url).netloc}; set PASSGATE_TEST_{what.upper()}_URL"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (required: PASSGATE_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def create_postgres_database() -> str:
    """Create an empty database for one test and return its URL."""
    require_server(POSTGRES_URL, 5432, "postgres")
    name = f"passgate_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
