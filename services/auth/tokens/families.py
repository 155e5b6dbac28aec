"""The SQL of refresh-token families: start one, rotate a token in it, revoke."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db import write_transaction
from services.auth.tables import accounts, refresh_families, refresh_tokens

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class FamilyGrant:
    """What a refresh-token family was granted, and who holds it now."""

    family_id: str
    account_id: str
    role: str
    client_id: str
    scope: str
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """One stored refresh token with its family, as revocation and introspection see it."""

    family_id: str
    account_id: str
    client_id: str
    scope: str
    issued_at: dt.datetime
    expires_at: dt.datetime  # the earlier of its idle expiry and its family's absolute one
    spent: bool
    revoked: bool

    def active(self, now: dt.datetime) -> bool:
        return not self.spent and not self.revoked and now < self.expires_at


class RotationStatus(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"


@dataclasses.dataclass(frozen=True, slots=True)
class Rotation(Generic[T]):
    status: RotationStatus
    grant: FamilyGrant | None = None
    decision: T | None = None


async def revoke_family(
    connection: AsyncConnection, family_id: str, now: dt.datetime, reason: str
) -> None:
    await connection.execute(
        refresh_families.update()
        .where(refresh_families.c.id == family_id, refresh_families.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def revoke_account_families(
    connection: AsyncConnection, account_id: str, now: dt.datetime, reason: str
) -> int:
    """Revoke every live family of an account within the caller's transaction (a password
    change does it together with the new hash)."""
    result = await connection.execute(
        refresh_families.update()
        .where(
            refresh_families.c.account_id == account_id,
            refresh_families.c.revoked_at.is_(None),
        )
        .values(revoked_at=now, revoked_reason=reason)
    )
    return result.rowcount


async def _token_row(connection: AsyncConnection, token_hash: str) -> sa.Row | None:  # type: ignore[type-arg]
    """A refresh token with its family and the family's account, as one row."""
    return (
        await connection.execute(
            sa.select(
                refresh_tokens.c.spent_at,
                refresh_tokens.c.issued_at,
                refresh_tokens.c.idle_expires_at,
                refresh_families.c.id.label("family_id"),
                refresh_families.c.client_id,
                refresh_families.c.scope,
                refresh_families.c.expires_at,
                refresh_families.c.revoked_at,
                accounts.c.id.label("account_id"),
                accounts.c.role,
            )
            .select_from(
                refresh_tokens.join(refresh_families).join(
                    accounts, accounts.c.id == refresh_families.c.account_id
                )
            )
            .where(refresh_tokens.c.token_hash == token_hash)
        )
    ).first()


class RefreshFamilyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_family(
        self,
        *,
        family_id: str,
        account_id: str,
        client_id: str,
        scope: str,
        token_hash: str,
        now: dt.datetime,
        expires_at: dt.datetime,
        idle_expires_at: dt.datetime,
    ) -> None:
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                refresh_families.insert().values(
                    id=family_id,
                    account_id=account_id,
                    client_id=client_id,
                    scope=scope,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            await connection.execute(
                refresh_tokens.insert().values(
                    token_hash=token_hash,
                    family_id=family_id,
                    issued_at=now,
                    idle_expires_at=idle_expires_at,
                )
            )

    async def rotate_refresh_token(
        self,
        token_hash: str,
        new_hash: str,
        now: dt.datetime,
        idle_ttl: dt.timedelta,
        decide: Callable[[FamilyGrant], T],
    ) -> Rotation[T]:
        """Spend one refresh token and issue its successor in the same family, atomically.

        The spend is a conditional UPDATE (`spent_at IS NULL`): of two concurrent uses
        exactly one changes the row, on SQLite and PostgreSQL alike. The other, like any
        later use of a spent token, is reuse: the family is revoked in the same
        transaction, so the thief and the victim both lose it. `decide` may raise to refuse
        the request (for example a widened scope); nothing is spent then.
        """
        async with write_transaction(self.engine) as connection:
            row = await _token_row(connection, token_hash)
            if row is None:
                return Rotation(RotationStatus.UNKNOWN)
            grant = FamilyGrant(
                row.family_id, row.account_id, row.role, row.client_id, row.scope, row.expires_at
            )
            if row.revoked_at is not None:
                return Rotation(RotationStatus.REVOKED, grant)
            if row.spent_at is not None:
                await revoke_family(connection, grant.family_id, now, "reuse")
                return Rotation(RotationStatus.REUSED, grant)
            if now >= row.expires_at or now >= row.idle_expires_at:
                return Rotation(RotationStatus.EXPIRED, grant)
            decision = decide(grant)
            spent = await connection.execute(
                refresh_tokens.update()
                .where(
                    refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.spent_at.is_(None)
                )
                .values(spent_at=now)
            )
            if spent.rowcount != 1:  # a concurrent use spent it first
                await revoke_family(connection, grant.family_id, now, "reuse")
                return Rotation(RotationStatus.REUSED, grant)
            await connection.execute(
                refresh_tokens.insert().values(
                    token_hash=new_hash,
                    family_id=grant.family_id,
                    issued_at=now,
                    idle_expires_at=min(now + idle_ttl, grant.expires_at),
                )
            )
        return Rotation(RotationStatus.ROTATED, grant, decision)

    async def revoke_family_of_token(self, token_hash: str, now: dt.datetime) -> bool:
        async with write_transaction(self.engine) as connection:
            family_id = (
                await connection.execute(
                    sa.select(refresh_tokens.c.family_id).where(
                        refresh_tokens.c.token_hash == token_hash
                    )
                )
            ).scalar()
            if family_id is None:
                return False
            await revoke_family(connection, family_id, now, "logout")
        return True

    async def refresh_token(self, token_hash: str) -> RefreshTokenRecord | None:
        async with self.engine.connect() as connection:
            row = await _token_row(connection, token_hash)
        if row is None:
            return None
        return RefreshTokenRecord(
            family_id=row.family_id,
            account_id=row.account_id,
            client_id=row.client_id,
            scope=row.scope,
            issued_at=row.issued_at,
            expires_at=min(row.idle_expires_at, row.expires_at),
            spent=row.spent_at is not None,
            revoked=row.revoked_at is not None,
        )

    async def revoke_family(self, family_id: str, now: dt.datetime, reason: str) -> None:
        async with write_transaction(self.engine) as connection:
            await revoke_family(connection, family_id, now, reason)

    async def revoke_account_families(self, account_id: str, now: dt.datetime, reason: str) -> int:
        async with write_transaction(self.engine) as connection:
            return await revoke_account_families(connection, account_id, now, reason)

    async def family_revoked(self, family_id: str) -> bool:
        async with self.engine.connect() as connection:
            revoked_at = (
                await connection.execute(
                    sa.select(refresh_families.c.revoked_at).where(
                        refresh_families.c.id == family_id
                    )
                )
            ).scalar()
        return revoked_at is not None
