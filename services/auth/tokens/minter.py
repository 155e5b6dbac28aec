"""Access tokens (RFC 9068 JWTs), refresh-token families with rotation, client credentials."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from typing import Any

import jwt

from common.timestamps import Clock
from services.auth.repository import AuthRepository, FamilyGrant, RotationStatus
from services.auth.scopes import format_scope, narrow, role_scopes
from services.auth.settings import AuthSettings
from services.auth.signing_keys import ALGORITHM, KeyRing

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 section 2.1
# The client id in user tokens: the first-party apps that log in with a password.
FIRST_PARTY_CLIENT_ID = "passgate"
# A prefix makes leaked refresh tokens and client secrets recognisable to secret scanners.
REFRESH_TOKEN_PREFIX = "pgr_"
CLIENT_SECRET_PREFIX = "pgs_"
TOKEN_BYTES = 32  # 256 bits from the CSPRNG


def opaque_hash(value: str) -> str:
    """SHA-256 of a high-entropy secret: enough to store it, as nothing can guess the input."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


class RefreshError(Exception):
    """A refresh token that cannot be used; `status` says why (for metrics, never the client)."""

    def __init__(self, status: RotationStatus) -> None:
        super().__init__(status.value)
        self.status = status


@dataclasses.dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str = dataclasses.field(repr=False)
    expires_in: int
    scope: str
    refresh_token: str | None = dataclasses.field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


class TokenService:
    """Mints access tokens with the current key and keeps refresh-token families."""

    def __init__(
        self, settings: AuthSettings, ring: KeyRing, repository: AuthRepository, clock: Clock
    ) -> None:
        self.settings = settings
        self.ring = ring
        self.repository = repository
        self.clock = clock

    def access_token(self, subject: str, scopes: frozenset[str], client_id: str) -> TokenResponse:
        now = self.clock()
        key = self.ring.signing_key(now)
        issued = int(now.timestamp())
        ttl = self.settings.access_token_ttl
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "jti": str(uuid.uuid4()),
            "scope": format_scope(scopes),
            "client_id": client_id,
        }
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
        )
        return TokenResponse(token, ttl, claims["scope"])

    async def login(self, account_id: str, role: str, requested_scope: str | None) -> TokenResponse:
        """Start a refresh-token family for a fresh password login."""
        scopes = narrow(role_scopes(role), requested_scope)
        now = self.clock()
        self.ring.signing_key(now)  # fail before storing anything when no key may sign
        refresh_token = new_secret(REFRESH_TOKEN_PREFIX)
        expires_at = now + dt.timedelta(seconds=self.settings.refresh_absolute_ttl)
        await self.repository.create_family(
            family_id=str(uuid.uuid4()),
            account_id=account_id,
            client_id=FIRST_PARTY_CLIENT_ID,
            scope=format_scope(scopes),
            token_hash=opaque_hash(refresh_token),
            now=now,
            expires_at=expires_at,
            idle_expires_at=min(
                now + dt.timedelta(seconds=self.settings.refresh_idle_ttl), expires_at
            ),
        )
        access = self.access_token(account_id, scopes, FIRST_PARTY_CLIENT_ID)
        return dataclasses.replace(access, refresh_token=refresh_token)

    async def refresh(self, refresh_token: str, requested_scope: str | None) -> TokenResponse:
        """Rotate: spend `refresh_token`, issue its successor and a new access token.

        The family keeps the scope granted at login (RFC 6749 section 6: a refresh may not
        widen it); a request may narrow the access token only. A role lost since login
        narrows it too.
        """
        self.ring.signing_key(self.clock())  # fail before spending the token
        new_token = new_secret(REFRESH_TOKEN_PREFIX)

        def decide(grant: FamilyGrant) -> frozenset[str]:
            granted = frozenset(grant.scope.split()) & role_scopes(grant.role)
            return narrow(granted, requested_scope)

        rotation = await self.repository.rotate_refresh_token(
            opaque_hash(refresh_token),
            opaque_hash(new_token),
            self.clock(),
            dt.timedelta(seconds=self.settings.refresh_idle_ttl),
            decide,
        )
        if rotation.status is not RotationStatus.ROTATED:
            raise RefreshError(rotation.status)
        assert rotation.grant is not None and rotation.decision is not None
        access = self.access_token(
            rotation.grant.account_id, rotation.decision, rotation.grant.client_id
        )
        return dataclasses.replace(access, refresh_token=new_token)

    async def revoke(self, refresh_token: str) -> None:
        await self.repository.revoke_family_of_token(opaque_hash(refresh_token), self.clock())

    async def client_credentials(
        self, client_id: str, secret: str, requested_scope: str | None
    ) -> TokenResponse | None:
        """RFC 6749 section 4.4: None when the client is unknown or the secret is wrong."""
        client = await self.repository.client(client_id)
        expected = client.secret_hash if client else opaque_hash("no such client")
        if not hmac.compare_digest(expected, opaque_hash(secret)) or client is None:
            return None
        scopes = narrow(frozenset(client.scope.split()), requested_scope)
        # No refresh token (RFC 6749 section 4.4.3): the client can always authenticate again.
        return self.access_token(client.client_id, scopes, client.client_id)
