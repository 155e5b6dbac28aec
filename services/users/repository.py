"""All SQL of the users service: the profiles table and its queries (SQLAlchemy Core).

The same statements run on SQLite and PostgreSQL. A profile holds no credential of any
kind: auth owns passwords, refresh tokens and keys; users only knows who someone is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import dialect_insert, write_transaction
from common.timestamps import Clock, UtcDateTime, rfc3339, utc_now

metadata = sa.MetaData()

profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    id: str
    username: str
    display_name: str
    created_at: dt.datetime

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "created_at": rfc3339(self.created_at),
        }


class ProfileConflict(Exception):
    """The id exists with another username, or the username belongs to another id."""


_COLUMNS = (profiles.c.id, profiles.c.username, profiles.c.display_name, profiles.c.created_at)


def _profile(row: sa.Row) -> Profile:
    return Profile(row.id, row.username, row.display_name, row.created_at)


class ProfileRepository:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    async def get(self, user_id: str) -> Profile | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(*_COLUMNS).where(profiles.c.id == user_id))
            ).first()
        return _profile(row) if row else None

    async def provision(
        self, user_id: str, username: str, display_name: str | None
    ) -> tuple[Profile, bool]:
        """Create the profile once; a repeat with the same username returns it unchanged.

        Returns (profile, created). ON CONFLICT DO NOTHING covers both unique columns, so
        concurrent repeats on PostgreSQL wait for each other instead of failing.
        """
        now = self.clock()
        async with write_transaction(self.engine) as connection:
            inserted = (
                await connection.execute(
                    dialect_insert(connection, profiles)
                    .values(
                        id=user_id,
                        username=username,
                        display_name=display_name or username,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(profiles.c.id)
                )
            ).first()
            row = (
                await connection.execute(sa.select(*_COLUMNS).where(profiles.c.id == user_id))
            ).first()
        if row is None or row.username != username:
            raise ProfileConflict(user_id)
        return _profile(row), inserted is not None

    async def set_display_name(self, user_id: str, display_name: str | None) -> Profile | None:
        """Change the display name; None resets it to the username. None when no profile."""
        new_name = profiles.c.username if display_name is None else sa.literal(display_name)
        async with write_transaction(self.engine) as connection:
            result = await connection.execute(
                profiles.update()
                .where(profiles.c.id == user_id)
                .values(display_name=new_name, updated_at=self.clock())
            )
            if result.rowcount == 0:
                return None
            row = (
                await connection.execute(sa.select(*_COLUMNS).where(profiles.c.id == user_id))
            ).one()
        return _profile(row)
