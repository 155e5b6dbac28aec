"""Sessions of first-party logins: a refresh-token family per login, rotated on each use."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from common.timestamps import Clock
from services.auth.accounts.roles import format_scope, narrow
from services.auth.settings import AuthSettings
from services.auth.tokens.families import FamilyGrant, RefreshFamilyRepository, RotationStatus
from services.auth.tokens.minter import FIRST_PARTY_CLIENT_ID, AccessTokenMinter, TokenResponse
from services.auth.tokens.opaque import REFRESH_TOKEN_PREFIX, new_secret, opaque_hash


class RefreshError(Exception):
    """A refresh token that cannot be used; `status` says why (for metrics, never the client)."""

    def __init__(self, status: RotationStatus) -> None:
        super().__init__(status.value)
        self.status = status


class Sessions:
    """Starts, rotates and ends refresh-token families; mints through the minter."""

    def __init__(
        self,
        settings: AuthSettings,
        minter: AccessTokenMinter,
        families: RefreshFamilyRepository,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.minter = minter
        self.families = families
        self.clock = clock

    async def login(self, account_id: str, role: str, requested_scope: str | None) -> TokenResponse:
        """Start a refresh-token family for a fresh login."""
        scopes = narrow(self.settings.scope_policy.role_scopes(role), requested_scope)
        now = self.clock()
        self.minter.check_can_sign()  # fail before storing anything when no key may sign
        refresh_token = new_secret(REFRESH_TOKEN_PREFIX)
        expires_at = now + dt.timedelta(seconds=self.settings.refresh_absolute_ttl)
        family_id = str(uuid.uuid4())
        await self.families.create_family(
            family_id=family_id,
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
        access = self.minter.access_token(
            account_id, scopes, FIRST_PARTY_CLIENT_ID, session_id=family_id
        )
        return dataclasses.replace(access, refresh_token=refresh_token)

    async def refresh(self, refresh_token: str, requested_scope: str | None) -> TokenResponse:
        """Rotate: spend `refresh_token`, issue its successor and a new access token.

        The family keeps the scope granted at login (RFC 6749 section 6: a refresh may not
        widen it); a request may narrow the access token only. A role lost since login
        narrows it too.
        """
        self.minter.check_can_sign()  # fail before spending the token
        new_token = new_secret(REFRESH_TOKEN_PREFIX)

        role_scopes = self.settings.scope_policy.role_scopes

        def decide(grant: FamilyGrant) -> frozenset[str]:
            granted = frozenset(grant.scope.split()) & role_scopes(grant.role)
            return narrow(granted, requested_scope)

        rotation = await self.families.rotate_refresh_token(
            opaque_hash(refresh_token),
            opaque_hash(new_token),
            self.clock(),
            dt.timedelta(seconds=self.settings.refresh_idle_ttl),
            decide,
        )
        if rotation.status is not RotationStatus.ROTATED:
            raise RefreshError(rotation.status)
        assert rotation.grant is not None and rotation.decision is not None
        access = self.minter.access_token(
            rotation.grant.account_id,
            rotation.decision,
            rotation.grant.client_id,
            session_id=rotation.grant.family_id,
        )
        return dataclasses.replace(access, refresh_token=new_token)

    async def revoke(self, refresh_token: str) -> None:
        """End the family of one refresh token (logout)."""
        await self.families.revoke_family_of_token(opaque_hash(refresh_token), self.clock())

    async def revoke_all(self, account_id: str) -> None:
        """End every family of an account (logout everywhere)."""
        await self.families.revoke_account_families(account_id, self.clock(), "logout_all")
