"""The SQL of the database throttle backend: failure counters and known sign-in addresses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import dialect_insert, write_transaction
from services.auth.tables import known_sign_in_addresses, login_failures


class LoginFailureRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def locked_until(self, keys: Sequence[str], now: dt.datetime) -> dt.datetime | None:
        """The latest lockout still running on any of `keys`."""
        return max((await self.lockouts(keys, now)).values(), default=None)

    async def lockouts(self, keys: Sequence[str], now: dt.datetime) -> dict[str, dt.datetime]:
        """The end of each lockout still running among `keys`."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(login_failures.c.key, login_failures.c.locked_until).where(
                    login_failures.c.key.in_(keys), login_failures.c.locked_until > now
                )
            )
            return {row.key: row.locked_until for row in rows}

    async def record_failure(
        self,
        limits: Sequence[tuple[str, int]],
        now: dt.datetime,
        window: dt.timedelta,
        lockout: dt.timedelta,
    ) -> None:
        """Count one failure on each (key, limit); a key reaching its limit is locked out.

        Fixed windows: the count restarts when `window` has passed since its first failure,
        and after a lockout, so the next lockout again needs `limit` failures.
        """
        async with write_transaction(self.engine) as connection:
            for key, limit in limits:
                await connection.execute(
                    dialect_insert(connection, login_failures)
                    .values(key=key, failures=0, window_started_at=now)
                    .on_conflict_do_nothing()
                )
                row = (
                    await connection.execute(
                        sa.select(login_failures)
                        .where(login_failures.c.key == key)
                        .with_for_update()
                    )
                ).one()
                failures, started = row.failures + 1, row.window_started_at
                if now >= started + window:
                    failures, started = 1, now
                values: dict[str, object] = {"failures": failures, "window_started_at": started}
                if failures >= limit:
                    values = {
                        "failures": 0,
                        "window_started_at": now,
                        "locked_until": now + lockout,
                    }
                await connection.execute(
                    login_failures.update().where(login_failures.c.key == key).values(**values)
                )

    async def login_succeeded(
        self, account_key: str, pair_key: str, now: dt.datetime, remember: dt.timedelta
    ) -> None:
        """After a correct login: forget the failures of the account (a running lockout
        stays) and remember its address as known until `now + remember`."""
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                login_failures.delete().where(
                    login_failures.c.key == account_key,
                    sa.or_(
                        login_failures.c.locked_until.is_(None),
                        login_failures.c.locked_until <= now,
                    ),
                )
            )
            insert = dialect_insert(connection, known_sign_in_addresses).values(
                key=pair_key, expires_at=now + remember
            )
            await connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[known_sign_in_addresses.c.key],
                    set_={"expires_at": insert.excluded.expires_at},
                )
            )
            # Keep the table to the pairs still remembered; the index makes this cheap.
            await connection.execute(
                known_sign_in_addresses.delete().where(known_sign_in_addresses.c.expires_at <= now)
            )

    async def known_sign_in_address(self, pair_key: str, now: dt.datetime) -> bool:
        async with self.engine.connect() as connection:
            found = await connection.execute(
                sa.select(sa.literal(1)).where(
                    known_sign_in_addresses.c.key == pair_key,
                    known_sign_in_addresses.c.expires_at > now,
                )
            )
            return found.first() is not None
