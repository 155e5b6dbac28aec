"""The migrated schemas of users and orders hold no credential, and match their repositories.

Trust boundary 1: only auth holds credentials. A column or table whose name speaks of a
password, hash, secret, refresh token, key or salt in either service fails this test.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from common.db import create_engine, migrate

CREDENTIAL_WORDS = ("password", "hash", "secret", "refresh", "key", "token", "salt", "credential")
SERVICES = {"users": {"profiles"}, "orders": {"orders", "order_items"}}


async def migrated_columns(database_url: str, migrations_dir: Path) -> dict[str, set[str]]:
    engine = create_engine(database_url)
    try:
        await migrate(engine, migrations_dir)
        async with engine.connect() as connection:

            def read(sync_connection: sa.Connection) -> dict[str, set[str]]:
                inspector = sa.inspect(sync_connection)
                return {
                    table: {column["name"] for column in inspector.get_columns(table)}
                    for table in inspector.get_table_names()
                }

            return await connection.run_sync(read)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_schema_has_no_credential_column(database_url: str, service: str) -> None:
    app = importlib.import_module(f"services.{service}.app")
    columns = await migrated_columns(database_url, app.MIGRATIONS_DIR)
    assert SERVICES[service] <= set(columns)
    suspicious = [
        f"{table}.{column}"
        for table, names in columns.items()
        for column in names
        if any(word in column.lower() or word in table.lower() for word in CREDENTIAL_WORDS)
    ]
    assert suspicious == []


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_migrations_match_the_repository_tables(database_url: str, service: str) -> None:
    app = importlib.import_module(f"services.{service}.app")
    repository = importlib.import_module(f"services.{service}.repository")
    columns = await migrated_columns(database_url, app.MIGRATIONS_DIR)
    for table in repository.metadata.sorted_tables:
        assert columns[table.name] == {column.name for column in table.columns}
