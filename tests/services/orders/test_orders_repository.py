"""The order repository, every test on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from common.db import create_engine, migrate
from common.driver import Driver, open_driver
from common.settings import DatabaseSettings
from services.orders.app import MIGRATIONS_DIR
from services.orders.models import OrderItem, request_fingerprint
from services.orders.repository import IdempotencyConflictError, OrderRepository, orders

ITEMS = (OrderItem("BOOK-42", 2, 1250), OrderItem("pen", 3, 99))
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    await migrate(engine, MIGRATIONS_DIR)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def driver(engine, database_url) -> AsyncIterator[Driver]:
    """The request path's driver, on the database the engine fixture migrated."""
    driver = await open_driver(DatabaseSettings(database_url, migrate_on_start=False))
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def repository(driver) -> AsyncIterator[OrderRepository]:
    yield OrderRepository(driver, clock=lambda: T0)


async def count_orders(engine) -> int:
    async with engine.connect() as connection:
        return (
            await connection.execute(sa.select(sa.func.count()).select_from(orders))
        ).scalar_one()


async def test_create_and_get(repository) -> None:
    user = str(uuid.uuid4())
    order, created = await repository.create(user, ITEMS, "note ✨")
    assert created
    assert order.total_cents == 2 * 1250 + 3 * 99 and order.status == "placed"
    loaded = await repository.get(order.id, owner=user)
    assert loaded == order
    assert loaded.items == ITEMS  # item order kept
    assert loaded.created_at == T0 and loaded.created_at.tzinfo is not None
    assert await repository.get(order.id, owner=str(uuid.uuid4())) is None
    assert await repository.get(order.id, owner=None) == order
    assert await repository.get(str(uuid.uuid4()), owner=None) is None


async def test_largest_total_fits(repository) -> None:
    items = [OrderItem(f"S{i}", 1000, 1_000_000_000) for i in range(100)]
    order, _ = await repository.create(str(uuid.uuid4()), items, None)
    assert (await repository.get(order.id, owner=None)).total_cents == 10**14


async def test_idempotent_create(repository, engine) -> None:
    user = str(uuid.uuid4())
    fingerprint = request_fingerprint(ITEMS, None)
    first, created = await repository.create(
        user, ITEMS, None, idempotency_key="k", fingerprint=fingerprint
    )
    again, created_again = await repository.create(
        user, ITEMS, None, idempotency_key="k", fingerprint=fingerprint
    )
    assert created and not created_again and again == first
    with pytest.raises(IdempotencyConflictError):
        await repository.create(
            user,
            ITEMS[:1],
            None,
            idempotency_key="k",
            fingerprint=request_fingerprint(ITEMS[:1], None),
        )
    other, created_other = await repository.create(
        str(uuid.uuid4()), ITEMS, None, idempotency_key="k", fingerprint=fingerprint
    )
    assert created_other and other.id != first.id
    # Without a key, nothing is deduplicated (NULL keys never collide).
    await repository.create(user, ITEMS, None)
    await repository.create(user, ITEMS, None)
    assert await count_orders(engine) == 4


async def test_concurrent_repeats_create_one_order(repository, engine) -> None:
    user = str(uuid.uuid4())
    fingerprint = request_fingerprint(ITEMS, None)
    results = await asyncio.gather(
        *(
            repository.create(user, ITEMS, None, idempotency_key="burst", fingerprint=fingerprint)
            for _ in range(20)
        )
    )
    assert sum(created for _, created in results) == 1
    assert len({order.id for order, _ in results}) == 1
    assert await count_orders(engine) == 1


async def test_keyset_pages_break_timestamp_ties_by_id(driver) -> None:
    """Orders sharing one timestamp still page without duplicates or gaps."""
    ticks = iter(
        [T0] * 7 + [T0 + dt.timedelta(microseconds=1)] * 6 + [T0 + dt.timedelta(seconds=1)] * 4
    )
    repository = OrderRepository(driver, clock=lambda: next(ticks))
    user = str(uuid.uuid4())
    placed = [(await repository.create(user, ITEMS, None))[0] for _ in range(17)]
    expected = [o.id for o in sorted(placed, key=lambda o: (o.created_at, o.id), reverse=True)]
    seen: list[str] = []
    after = None
    for _ in range(10):
        page, after = await repository.list(user, limit=3, after=after)
        seen += [order.id for order in page]
        if after is None:
            break
    assert seen == expected
    assert all(o.items == ITEMS for o in page)


async def test_list_is_per_user_and_bounded(repository) -> None:
    user = str(uuid.uuid4())
    for _ in range(3):
        await repository.create(user, ITEMS, None)
    await repository.create(str(uuid.uuid4()), ITEMS, None)
    page, after = await repository.list(user, limit=3)
    assert len(page) == 3 and after is None
    page, after = await repository.list(user, limit=2)
    assert len(page) == 2 and after is not None
    assert await repository.list(str(uuid.uuid4()), limit=5) == ([], None)


async def test_cancel(driver) -> None:
    ticks = iter([T0, T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=2)])
    repository = OrderRepository(driver, clock=lambda: next(ticks))
    user = str(uuid.uuid4())
    order, _ = await repository.create(user, ITEMS, None)
    assert await repository.cancel(order.id, owner=str(uuid.uuid4())) is None
    assert await repository.cancel(str(uuid.uuid4()), owner=None) is None
    cancelled, changed = await repository.cancel(order.id, owner=user)
    assert changed and cancelled.status == "cancelled"
    assert cancelled.cancelled_at == T0 + dt.timedelta(minutes=1)
    again, changed_again = await repository.cancel(order.id, owner=None)
    assert not changed_again and again == cancelled


async def test_concurrent_cancels_change_once(repository) -> None:
    order, _ = await repository.create(str(uuid.uuid4()), ITEMS, None)
    results = await asyncio.gather(*(repository.cancel(order.id, owner=None) for _ in range(6)))
    assert sum(changed for _, changed in results) == 1
    assert {o.status for o, _ in results} == {"cancelled"}
