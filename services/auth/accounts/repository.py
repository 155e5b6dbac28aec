"""The SQL of accounts: create, read, change a password or a role, delete."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import write_transaction
from services.auth.tables import (
    accounts,
    external_identities,
    oidc_handoffs,
    refresh_families,
    refresh_tokens,
)
from services.auth.tokens.families import revoke_account_families

# The password hash of an account that signs in only through an external provider: not an
# Argon2 hash, so no password ever verifies against it (the /etc/shadow convention).
NO_PASSWORD = "!"


class UsernameTakenError(Exception):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    id: str
    username: str
    password_hash: str = dataclasses.field(repr=False)
    role: str
    created_at: dt.datetime

    @property
    def has_password(self) -> bool:
        return self.password_hash != NO_PASSWORD


def _account(row: sa.Row) -> Account:  # type: ignore[type-arg]
    return Account(row.id, row.username, row.password_hash, row.role, row.created_at)


class AccountRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        account: Account,
        *,
        together: Sequence[sa.Insert] = (),
        explain_conflict: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Insert the account and the rows of `together` (rows that must never exist
        without it, such as its first external identity) in one transaction.

        On a unique-key conflict `explain_conflict` may raise a more precise error (it runs
        after the rollback); otherwise the username is taken: UsernameTakenError.
        """
        try:
            async with write_transaction(self.engine) as connection:
                await connection.execute(
                    accounts.insert().values(
                        id=account.id,
                        username=account.username,
                        password_hash=account.password_hash,
                        role=account.role,
                        created_at=account.created_at,
                        password_changed_at=account.created_at,
                    )
                )
                for insert in together:
                    await connection.execute(insert)
        except exc.IntegrityError:
            if explain_conflict is not None:
                await explain_conflict()
            raise UsernameTakenError(account.username) from None

    async def delete(self, account_id: str) -> None:
        """The account and every row that refers to it, in one transaction."""
        async with write_transaction(self.engine) as connection:
            families = sa.select(refresh_families.c.id).where(
                refresh_families.c.account_id == account_id
            )
            await connection.execute(
                refresh_tokens.delete().where(refresh_tokens.c.family_id.in_(families))
            )
            await connection.execute(
                refresh_families.delete().where(refresh_families.c.account_id == account_id)
            )
            await connection.execute(
                external_identities.delete().where(external_identities.c.account_id == account_id)
            )
            await connection.execute(
                oidc_handoffs.delete().where(oidc_handoffs.c.account_id == account_id)
            )
            await connection.execute(accounts.delete().where(accounts.c.id == account_id))

    async def by_username(self, username: str) -> Account | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(accounts).where(accounts.c.username == username))
            ).first()
        return _account(row) if row else None

    async def by_id(self, account_id: str) -> Account | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(accounts).where(accounts.c.id == account_id))
            ).first()
        return _account(row) if row else None

    async def upgrade_password_hash(self, account_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace a hash made with older parameters, unless the password changed meanwhile."""
        async with write_transaction(self.engine) as connection:
            result = await connection.execute(
                accounts.update()
                .where(accounts.c.id == account_id, accounts.c.password_hash == old_hash)
                .values(password_hash=new_hash)
            )
        return result.rowcount == 1

    async def change_password(
        self, account_id: str, old_hash: str, new_hash: str, now: dt.datetime
    ) -> bool:
        """Set a new hash and revoke every refresh-token family of the account, atomically."""
        async with write_transaction(self.engine) as connection:
            result = await connection.execute(
                accounts.update()
                .where(accounts.c.id == account_id, accounts.c.password_hash == old_hash)
                .values(password_hash=new_hash, password_changed_at=now)
            )
            if result.rowcount != 1:
                return False
            await revoke_account_families(connection, account_id, now, "password_change")
        return True

    async def set_role(self, username: str, role: str) -> bool:
        async with write_transaction(self.engine) as connection:
            result = await connection.execute(
                accounts.update().where(accounts.c.username == username).values(role=role)
            )
        return result.rowcount == 1
