"""All SQL of the users service: the profiles table and its queries (SQLAlchemy Core).

The same statements run on SQLite and PostgreSQL, compiled once per dialect and run on the
driver (common.statements says why). A profile holds no credential of any
kind: auth owns passwords, refresh tokens and keys; users only knows who someone is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa

from common.driver import Driver
from common.statements import Execute, Operation, Rows, Statement
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


class ProfileConflictError(Exception):
    """The id exists with another username, or the username belongs to another id."""


_COLUMNS = (profiles.c.id, profiles.c.username, profiles.c.display_name, profiles.c.created_at)

GET = Statement(sa.select(*_COLUMNS).where(profiles.c.id == sa.bindparam("id")))
# ON CONFLICT DO NOTHING covers both unique columns, so concurrent repeats on PostgreSQL
# wait for each other instead of failing.
PROVISION = Statement(
    lambda insert: (
        insert(profiles)
        .values({column.name: sa.bindparam(column.name) for column in profiles.c})
        .on_conflict_do_nothing()
        .returning(profiles.c.id)
    )
)
SET_DISPLAY_NAME = Statement(
    profiles.update()
    .where(profiles.c.id == sa.bindparam("id"))
    .values(display_name=sa.bindparam("display_name"), updated_at=sa.bindparam("updated_at"))
)
RESET_DISPLAY_NAME = Statement(
    profiles.update()
    .where(profiles.c.id == sa.bindparam("id"))
    .values(display_name=profiles.c.username, updated_at=sa.bindparam("updated_at"))
)


def _get(user_id: str) -> Operation[Profile | None]:
    rows = yield Rows(GET, {"id": user_id})
    return Profile(*rows[0]) if rows else None


class ProfileRepository:
    def __init__(self, driver: Driver, *, clock: Clock = utc_now) -> None:
        self.driver = driver
        self.clock = clock

    async def get(self, user_id: str) -> Profile | None:
        return await self.driver.run(_get(user_id))

    async def provision(
        self, user_id: str, username: str, display_name: str | None
    ) -> tuple[Profile, bool]:
        """Create the profile once; a repeat with the same username returns it unchanged.

        Returns (profile, created).
        """
        now = self.clock()
        values = {
            "id": user_id,
            "username": username,
            "display_name": display_name or username,
            "created_at": now,
            "updated_at": now,
        }
        inserted, profile = await self.driver.run(_provision(values), write=True)
        if profile is None or profile.username != username:
            raise ProfileConflictError(user_id)
        return profile, inserted

    async def set_display_name(self, user_id: str, display_name: str | None) -> Profile | None:
        """Change the display name; None resets it to the username. None when no profile."""
        return await self.driver.run(
            _set_display_name(user_id, display_name, self.clock()), write=True
        )


def _provision(values: dict[str, Any]) -> Operation[tuple[bool, Profile | None]]:
    inserted = yield Rows(PROVISION, values)
    profile = yield from _get(values["id"])
    return bool(inserted), profile


def _set_display_name(
    user_id: str, display_name: str | None, now: dt.datetime
) -> Operation[Profile | None]:
    if display_name is None:
        changed = yield Execute(RESET_DISPLAY_NAME, {"id": user_id, "updated_at": now})
    else:
        changed = yield Execute(
            SET_DISPLAY_NAME, {"id": user_id, "display_name": display_name, "updated_at": now}
        )
    if changed == 0:
        return None
    return (yield from _get(user_id))
