"""Machine clients (RFC 6749 section 4.4): their SQL and the client-credentials grant."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import re

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import write_transaction
from services.auth.accounts.roles import narrow
from services.auth.tables import clients
from services.auth.tokens.minter import AccessTokenMinter, TokenResponse
from services.auth.tokens.opaque import opaque_hash


# What create-client accepts; a presented id of another shape is nobody, and is never
# sent to the database (PostgreSQL refuses a NUL in text, for one).
CLIENT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    secret_hash: str = dataclasses.field(repr=False)
    scope: str
    may_introspect: bool = False


class ClientRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_client(
        self,
        client_id: str,
        secret_hash: str,
        scope: str,
        now: dt.datetime,
        *,
        may_introspect: bool = False,
    ) -> None:
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                clients.insert().values(
                    client_id=client_id,
                    secret_hash=secret_hash,
                    scope=scope,
                    created_at=now,
                    may_introspect=may_introspect,
                )
            )

    async def client(self, client_id: str) -> Client | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(clients).where(clients.c.client_id == client_id))
            ).first()
        if row is None:
            return None
        return Client(row.client_id, row.secret_hash, row.scope, row.may_introspect)

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client whose secret this is; None for an unknown client or a wrong secret,
        after the same constant-time comparison either way."""
        client = await self.client(client_id) if CLIENT_ID_PATTERN.fullmatch(client_id) else None
        expected = client.secret_hash if client else opaque_hash("no such client")
        if not hmac.compare_digest(expected, opaque_hash(secret)) or client is None:
            return None
        return client


class ClientCredentials:
    """The client-credentials grant, for a client tokens/client_auth.py authenticated."""

    def __init__(self, minter: AccessTokenMinter) -> None:
        self.minter = minter

    def grant(self, client_id: str, granted: str, requested_scope: str | None) -> TokenResponse:
        """Raises InvalidScopeError for a scope beyond the client's `granted` ones."""
        scopes = narrow(frozenset(granted.split()), requested_scope)
        # No refresh token (RFC 6749 section 4.4.3): the client can always authenticate again.
        return self.minter.access_token(client_id, scopes, client_id)
