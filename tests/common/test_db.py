"""Storage: one code path, migrated by Alembic, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from common.db import create_engine, migrate

REVISION = '''
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("things", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.Text))


def downgrade() -> None:
    op.drop_table("things")
'''


async def test_migrations_apply_once_even_when_run_concurrently(database_url, tmp_path: Path) -> None:
    """Replicas that start together all find the schema at head, created exactly once."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_things.py").write_text(REVISION)
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(engine, versions) for engine in engines))
        async with engines[0].begin() as connection:
            await connection.execute(sa.text("INSERT INTO things (name) VALUES ('a')"))
            rows = (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
        assert rows == [("0001",)]
    finally:
        for engine in engines:
            await engine.dispose()
