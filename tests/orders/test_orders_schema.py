"""The migrated orders schema holds no credential, and matches the repository's tables."""

from __future__ import annotations

import sqlalchemy as sa

from common.db import create_engine, migrate
from services.orders.app import MIGRATIONS_DIR
from services.orders.repository import metadata

CREDENTIAL_WORDS = ("password", "hash", "secret", "refresh", "key", "token", "salt", "credential")


async def migrated_columns(database_url: str) -> dict[str, set[str]]:
    engine = create_engine(database_url)
    try:
        await migrate(engine, MIGRATIONS_DIR)
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


async def test_orders_schema_has_no_credential_column(database_url) -> None:
    columns = await migrated_columns(database_url)
    assert {"orders", "order_items"} <= set(columns)
    suspicious = [
        f"{table}.{column}"
        for table, names in columns.items()
        for column in names
        if any(word in column.lower() or word in table.lower() for word in CREDENTIAL_WORDS)
    ]
    assert suspicious == []


async def test_migrations_match_the_repository_tables(database_url) -> None:
    columns = await migrated_columns(database_url)
    for table in metadata.sorted_tables:
        assert columns[table.name] == {column.name for column in table.columns}
