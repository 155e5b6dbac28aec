"""All SQL of the auth service (SQLAlchemy Core), portable to SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db import dialect_insert, write_transaction
from common.timestamps import UtcDateTime

T = TypeVar("T")

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("password_changed_at", UtcDateTime(), nullable=False),
)

refresh_families = sa.Table(
    "refresh_families",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_reason", sa.String(32), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(36), sa.ForeignKey("refresh_families.id"), nullable=False),
    sa.Column("issued_at", UtcDateTime(), nullable=False),
    sa.Column("idle_expires_at", UtcDateTime(), nullable=False),
    sa.Column("spent_at", UtcDateTime(), nullable=True),
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_started_at", UtcDateTime(), nullable=False),
    sa.Column("locked_until", UtcDateTime(), nullable=True),
)

known_sign_in_addresses = sa.Table(
    "known_sign_in_addresses",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

external_identities = sa.Table(
    "external_identities",
    metadata,
    sa.Column("issuer", sa.String(255), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("provider_id", sa.String(32), nullable=False),
    sa.Column("verified_email", sa.String(320), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_login_at", UtcDateTime(), nullable=True),
)

oidc_flows = sa.Table(
    "oidc_flows",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("provider_id", sa.String(32), nullable=False),
    sa.Column("nonce", sa.String(128), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("return_to", sa.Text, nullable=False),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("link_account_id", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

oidc_handoffs = sa.Table(
    "oidc_handoffs",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

# The password hash of an account that signs in only through an external provider: not an
# Argon2 hash, so no password ever verifies against it (the /etc/shadow convention).
NO_PASSWORD = "!"


class UsernameTakenError(Exception):
    pass


class IdentityTakenError(Exception):
    """This issuer + subject is linked to an account already."""


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


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str = dataclasses.field(repr=False)
    scope: str


@dataclasses.dataclass(frozen=True, slots=True)
class FamilyGrant:
    """What a refresh-token family was granted, and who holds it now."""

    family_id: str
    account_id: str
    role: str
    client_id: str
    scope: str
    expires_at: dt.datetime


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


def _account(row: sa.Row) -> Account:  # type: ignore[type-arg]
    return Account(row.id, row.username, row.password_hash, row.role, row.created_at)


class AuthRepository:
    """Credentials, refresh-token families, machine clients and login-failure counters."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- accounts --------------------------------------------------------------------

    async def create_account(
        self, account_id: str, username: str, password_hash: str, role: str, now: dt.datetime
    ) -> Account:
        try:
            async with write_transaction(self.engine) as connection:
                await connection.execute(
                    accounts.insert().values(
                        id=account_id,
                        username=username,
                        password_hash=password_hash,
                        role=role,
                        created_at=now,
                        password_changed_at=now,
                    )
                )
        except exc.IntegrityError:
            raise UsernameTakenError(username) from None
        return Account(account_id, username, password_hash, role, now)

    async def delete_account(self, account_id: str) -> None:
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

    async def account_by_username(self, username: str) -> Account | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(accounts).where(accounts.c.username == username))
            ).first()
        return _account(row) if row else None

    async def account_by_id(self, account_id: str) -> Account | None:
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
            await self._revoke_account_families(connection, account_id, now, "password_change")
        return True

    async def set_role(self, username: str, role: str) -> bool:
        async with write_transaction(self.engine) as connection:
            result = await connection.execute(
                accounts.update().where(accounts.c.username == username).values(role=role)
            )
        return result.rowcount == 1

    # -- refresh-token families -------------------------------------------------------

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
            row = (
                await connection.execute(
                    sa.select(
                        refresh_tokens.c.spent_at,
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
            if row is None:
                return Rotation(RotationStatus.UNKNOWN)
            grant = FamilyGrant(
                row.family_id, row.account_id, row.role, row.client_id, row.scope, row.expires_at
            )
            if row.revoked_at is not None:
                return Rotation(RotationStatus.REVOKED, grant)
            if row.spent_at is not None:
                await self._revoke_family(connection, grant.family_id, now, "reuse")
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
                await self._revoke_family(connection, grant.family_id, now, "reuse")
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
            await self._revoke_family(connection, family_id, now, "logout")
        return True

    async def revoke_account_families(self, account_id: str, now: dt.datetime, reason: str) -> int:
        async with write_transaction(self.engine) as connection:
            return await self._revoke_account_families(connection, account_id, now, reason)

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

    @staticmethod
    async def _revoke_family(
        connection: AsyncConnection, family_id: str, now: dt.datetime, reason: str
    ) -> None:
        await connection.execute(
            refresh_families.update()
            .where(refresh_families.c.id == family_id, refresh_families.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )

    @staticmethod
    async def _revoke_account_families(
        connection: AsyncConnection, account_id: str, now: dt.datetime, reason: str
    ) -> int:
        result = await connection.execute(
            refresh_families.update()
            .where(
                refresh_families.c.account_id == account_id,
                refresh_families.c.revoked_at.is_(None),
            )
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount

    # -- machine clients ---------------------------------------------------------------

    async def create_client(
        self, client_id: str, secret_hash: str, scope: str, now: dt.datetime
    ) -> None:
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                clients.insert().values(
                    client_id=client_id, secret_hash=secret_hash, scope=scope, created_at=now
                )
            )

    async def client(self, client_id: str) -> Client | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(clients).where(clients.c.client_id == client_id))
            ).first()
        return Client(row.client_id, row.secret_hash, row.scope) if row else None

    # -- login failures (the database throttle backend) --------------------------------

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

    # -- external identities (OpenID Connect) -------------------------------------------

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
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(external_identities)
                    .where(external_identities.c.verified_email == email)
                    .order_by(external_identities.c.created_at)
                )
            ).all()
        return [_identity(row) for row in rows]

    async def identities_of(self, account_id: str) -> list[ExternalIdentity]:
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(external_identities)
                    .where(external_identities.c.account_id == account_id)
                    .order_by(external_identities.c.created_at)
                )
            ).all()
        return [_identity(row) for row in rows]

    async def link_identity(self, identity: ExternalIdentity, now: dt.datetime) -> None:
        """Raises IdentityTakenError when the issuer + subject is linked already."""
        try:
            async with write_transaction(self.engine) as connection:
                await connection.execute(_insert_identity(identity, now))
        except exc.IntegrityError:
            raise IdentityTakenError() from None

    async def create_external_account(
        self, account: Account, identity: ExternalIdentity, now: dt.datetime
    ) -> None:
        """The account and its first identity in one transaction: neither exists alone.

        Raises UsernameTakenError or IdentityTakenError (told apart by a re-read).
        """
        try:
            async with write_transaction(self.engine) as connection:
                await connection.execute(
                    accounts.insert().values(
                        id=account.id,
                        username=account.username,
                        password_hash=account.password_hash,
                        role=account.role,
                        created_at=now,
                        password_changed_at=now,
                    )
                )
                await connection.execute(_insert_identity(identity, now))
        except exc.IntegrityError:
            if await self.external_identity(identity.issuer, identity.subject) is not None:
                raise IdentityTakenError() from None
            raise UsernameTakenError(account.username) from None

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

    # -- OpenID Connect sign-in flows and handoffs -------------------------------------

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
        async with write_transaction(self.engine) as connection:
            row = (
                await connection.execute(
                    sa.select(oidc_flows).where(oidc_flows.c.state_hash == state_hash)
                )
            ).first()
            if row is None:
                return None
            deleted = await connection.execute(
                oidc_flows.delete().where(oidc_flows.c.state_hash == state_hash)
            )
            if deleted.rowcount != 1:  # a concurrent callback took it first
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
        async with write_transaction(self.engine) as connection:
            row = (
                await connection.execute(
                    sa.select(oidc_handoffs).where(oidc_handoffs.c.code_hash == code_hash)
                )
            ).first()
            if row is None:
                return None
            deleted = await connection.execute(
                oidc_handoffs.delete().where(oidc_handoffs.c.code_hash == code_hash)
            )
            if deleted.rowcount != 1:
                return None
        return row.account_id, row.binding_hash, row.expires_at


def _identity(row: sa.Row) -> ExternalIdentity:  # type: ignore[type-arg]
    return ExternalIdentity(
        row.issuer, row.subject, row.account_id, row.provider_id, row.verified_email
    )


def _insert_identity(identity: ExternalIdentity, now: dt.datetime) -> sa.Insert:
    return external_identities.insert().values(
        issuer=identity.issuer,
        subject=identity.subject,
        account_id=identity.account_id,
        provider_id=identity.provider_id,
        verified_email=identity.verified_email,
        created_at=now,
        last_login_at=now,
    )
