"""Fixtures shared by every test: databases on SQLite and PostgreSQL, Redis; and, under
pytest-xdist, ports that no two workers choose alike.

The helpers behind them live in tests/support/servers.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import pytest

import devstack.processes
from tests.support.servers import (
    REDIS_URL,
    create_postgres_database,
    drop_postgres_database,
    require_server,
)


def _ports_of_this_worker() -> None:
    """Under pytest-xdist (make test runs one worker per core), each worker takes only the
    free ports whose number modulo the number of workers is its own index: a port one worker
    chose for a process it is about to start is never chosen by another in the seconds before
    that process binds it. Patched before any test module imports free_port (devstack.stack
    and the tests import it by name)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2:
        return
    index = int(worker[2:])
    assert "devstack.stack" not in sys.modules, "free_port was imported before the patch"
    any_free_port = devstack.processes.free_port

    def free_port(host: str = "127.0.0.1") -> int:
        for _ in range(1000):
            port = any_free_port(host)
            if port % workers == index:
                return port
        raise RuntimeError(f"no free port for xdist worker {worker} of {workers}")

    devstack.processes.free_port = free_port


_ports_of_this_worker()


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
