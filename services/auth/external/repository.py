"""The SQL of external sign-in: linked identities, sign-in flows and one-time handoffs."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import write_transaction
from services.auth.tables import external_identities, oidc_flows, oidc_handoffs


class IdentityTakenError(Exception):
    """This issuer + subject is linked to an account already."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExternalIdentity:
    issuer: str
    subject: str
    account_id: str
    provider_id: str
    verified_email: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class OidcFlow:
    """What a sign-in started with, kept until its callback (once) or expiry."""

    provider_id: str
    nonce: str = dataclasses.field(repr=False)
    code_verifier: str = dataclasses.field(repr=False)
    return_to: str
    binding_hash: str
    link_account_id: str | None
    expires_at: dt.datetime


def _identity(row: sa.Row) -> ExternalIdentity:  # type: ignore[type-arg]
    return ExternalIdentity(
        row.issuer, row.subject, row.account_id, row.provider_id, row.verified_email
    )


def insert_identity(identity: ExternalIdentity, now: dt.datetime) -> sa.Insert:
    """The row of a linked identity, for a transaction of its own or an account's."""
    return external_identities.insert().values(
        issuer=identity.issuer,
        subject=identity.subject,
        account_id=identity.account_id,
        provider_id=identity.provider_id,
        verified_email=identity.verified_email,
        created_at=now,
        last_login_at=now,
    )


class ExternalRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- identities ------------------------------------------------------------------

    async def external_identity(self, issuer: str, subject: str) -> ExternalIdentity | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(external_identities).where(
                        external_identities.c.issuer == issuer,
                        external_identities.c.subject == subject,
                    )
                )
            ).first()
        return _identity(row) if row else None

    async def identities_with_verified_email(self, email: str) -> list[ExternalIdentity]:
        return await self._identities(external_identities.c.verified_email == email)

    async def identities_of(self, account_id: str) -> list[ExternalIdentity]:
        return await self._identities(external_identities.c.account_id == account_id)

    async def _identities(self, condition: sa.ColumnElement[bool]) -> list[ExternalIdentity]:
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(external_identities)
                    .where(condition)
                    .order_by(external_identities.c.created_at)
                )
            ).all()
        return [_identity(row) for row in rows]

    async def link_identity(self, identity: ExternalIdentity, now: dt.datetime) -> None:
        """Raises IdentityTakenError when the issuer + subject is linked already."""
        try:
            async with write_transaction(self.engine) as connection:
                await connection.execute(insert_identity(identity, now))
        except exc.IntegrityError:
            raise IdentityTakenError() from None

    async def touch_identity(
        self, identity: ExternalIdentity, verified_email: str | None, now: dt.datetime
    ) -> None:
        """Record a sign-in; the verified e-mail follows what the provider says now."""
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                external_identities.update()
                .where(
                    external_identities.c.issuer == identity.issuer,
                    external_identities.c.subject == identity.subject,
                )
                .values(last_login_at=now, verified_email=verified_email)
            )

    # -- sign-in flows and handoffs --------------------------------------------------

    async def create_flow(self, state_hash: str, flow: OidcFlow, now: dt.datetime) -> None:
        async with write_transaction(self.engine) as connection:
            # Abandoned flows and handoffs go here, a few at a time, instead of in a job.
            await connection.execute(oidc_flows.delete().where(oidc_flows.c.expires_at < now))
            await connection.execute(oidc_handoffs.delete().where(oidc_handoffs.c.expires_at < now))
            await connection.execute(
                oidc_flows.insert().values(
                    state_hash=state_hash,
                    provider_id=flow.provider_id,
                    nonce=flow.nonce,
                    code_verifier=flow.code_verifier,
                    return_to=flow.return_to,
                    binding_hash=flow.binding_hash,
                    link_account_id=flow.link_account_id,
                    created_at=now,
                    expires_at=flow.expires_at,
                )
            )

    async def take_flow(self, state_hash: str) -> OidcFlow | None:
        """Remove and return the flow: a state is good for one callback, even a failed one."""
        row = await self._take(oidc_flows, oidc_flows.c.state_hash == state_hash)
        if row is None:
            return None
        return OidcFlow(
            row.provider_id,
            row.nonce,
            row.code_verifier,
            row.return_to,
            row.binding_hash,
            row.link_account_id,
            row.expires_at,
        )

    async def create_handoff(
        self,
        code_hash: str,
        account_id: str,
        binding_hash: str,
        now: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                oidc_handoffs.insert().values(
                    code_hash=code_hash,
                    account_id=account_id,
                    binding_hash=binding_hash,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    async def take_handoff(self, code_hash: str) -> tuple[str, str, dt.datetime] | None:
        """Remove and return (account_id, binding_hash, expires_at): one use, right or wrong."""
        row = await self._take(oidc_handoffs, oidc_handoffs.c.code_hash == code_hash)
        return None if row is None else (row.account_id, row.binding_hash, row.expires_at)

    async def _take(self, table: sa.Table, condition: sa.ColumnElement[bool]) -> sa.Row | None:  # type: ignore[type-arg]
        """Read and delete one row in a transaction; None when absent or when a concurrent
        taker deleted it first (each one-time value is used at most once)."""
        async with write_transaction(self.engine) as connection:
            row = (await connection.execute(sa.select(table).where(condition))).first()
            if row is None:
                return None
            deleted = await connection.execute(table.delete().where(condition))
            if deleted.rowcount != 1:
                return None
        return row
