"""The profile repository, every test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from common.db import create_engine, migrate
from common.driver import open_driver
from common.settings import DatabaseSettings
from services.users.app import MIGRATIONS_DIR
from services.users.repository import ProfileConflictError, ProfileRepository

T0 = dt.datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)


@pytest.fixture
async def repository(database_url) -> AsyncIterator[ProfileRepository]:
    engine = create_engine(database_url)
    await migrate(engine, MIGRATIONS_DIR)
    await engine.dispose()
    driver = await open_driver(DatabaseSettings(database_url, migrate_on_start=False))
    try:
        yield ProfileRepository(driver, clock=lambda: T0)
    finally:
        await driver.close()


async def test_provision_then_get(repository) -> None:
    user_id = str(uuid.uuid4())
    profile, created = await repository.provision(user_id, "alice", None)
    assert created
    assert (profile.id, profile.username, profile.display_name) == (user_id, "alice", "alice")
    assert profile.created_at == T0 and profile.created_at.tzinfo is not None
    assert await repository.get(user_id) == profile
    assert profile.to_json()["created_at"] == "2025-03-04T05:06:07.890123Z"
    assert await repository.get(str(uuid.uuid4())) is None


async def test_provision_repeat_returns_the_stored_profile(repository) -> None:
    user_id = str(uuid.uuid4())
    first, _ = await repository.provision(user_id, "bob", "Bob")
    again, created = await repository.provision(user_id, "bob", "Robert")
    assert not created and again == first


async def test_provision_conflicts(repository) -> None:
    user_id = str(uuid.uuid4())
    await repository.provision(user_id, "carol", None)
    with pytest.raises(ProfileConflictError):
        await repository.provision(user_id, "caroline", None)
    with pytest.raises(ProfileConflictError):
        await repository.provision(str(uuid.uuid4()), "carol", None)


async def test_concurrent_provisioning_creates_once(repository) -> None:
    user_id = str(uuid.uuid4())
    results = await asyncio.gather(*(repository.provision(user_id, "dave", None) for _ in range(8)))
    assert sum(created for _, created in results) == 1
    assert len({profile for profile, _ in results}) == 1


async def test_set_display_name_and_reset(repository) -> None:
    user_id = str(uuid.uuid4())
    await repository.provision(user_id, "erin", None)
    changed = await repository.set_display_name(user_id, "Erin ✨")
    assert changed is not None and changed.display_name == "Erin ✨"
    reset = await repository.set_display_name(user_id, None)
    assert reset is not None and reset.display_name == "erin"
    assert await repository.set_display_name(str(uuid.uuid4()), "nobody") is None
