"""RFC 7662 token introspection: whether a token of ours is active now, and what it says.

For resource servers that cannot verify JWTs themselves. Any token that is not active
(malformed, signed by no key of ours, expired, not yet valid, revoked, spent, unknown)
gets `{"active": false}` and nothing else (section 2.2), so the answer never says why.

An access token is checked like the gateway checks it (the published keys, `typ`,
`iss`, `aud`, the times with `PASSGATE_TOKEN_LEEWAY`) and, when it comes from a login
(its `sid` names the refresh-token family), that family must not be revoked: after a
logout or a revocation the gateway keeps accepting the token until `exp`, but auth knows
better and says so here (as Keycloak does for its sessions).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt

from common.timestamps import Clock
from services.auth.keyring.signing_keys import ALGORITHM, KeyRing
from services.auth.settings import AuthSettings
from services.auth.tokens.families import RefreshFamilyRepository
from services.auth.tokens.minter import ACCESS_TOKEN_TYPE
from services.auth.tokens.opaque import opaque_hash

INACTIVE: dict[str, Any] = {"active": False}
# Longer than any token auth issues (an access token is about 900 characters): such a
# value is nobody's token, and is not worth parsing.
MAX_TOKEN_CHARS = 4096
_TIME_CLAIMS = ("exp", "iat", "nbf")
_TEXT_CLAIMS = ("iss", "aud", "sub", "jti", "scope", "client_id")


def _is_time(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class AccessTokens:
    """Recognises auth's own access tokens by their signature, with auth's own clock."""

    def __init__(self, settings: AuthSettings, ring: KeyRing, clock: Clock) -> None:
        self.settings = settings
        self.ring = ring
        self.clock = clock

    def signed_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token a published key of ours signed, times unchecked."""
        if len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None
        if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("alg") != ALGORITHM:
            return None
        kid = header.get("kid")
        key = next((key for key in self.ring.published(self.clock()) if key.kid == kid), None)
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[ALGORITHM],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                # Times are checked below against the injected clock, not PyJWT's.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return None
        if not all(_is_time(claims.get(name)) for name in _TIME_CLAIMS):
            return None
        if not all(isinstance(claims.get(name), str) for name in _TEXT_CLAIMS):
            return None
        return claims

    def current_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token of ours that is valid at this moment."""
        claims = self.signed_claims(token)
        if claims is None:
            return None
        now = self.clock().timestamp()
        leeway = self.settings.token_leeway
        if claims["exp"] <= now - leeway or claims["nbf"] > now + leeway:
            return None
        if claims["iat"] > now + leeway:
            return None
        return claims


class TokenIntrospection:
    def __init__(
        self,
        settings: AuthSettings,
        access_tokens: AccessTokens,
        families: RefreshFamilyRepository,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.access_tokens = access_tokens
        self.families = families
        self.clock = clock

    async def introspect(self, token: str) -> dict[str, Any]:
        """The RFC 7662 section 2.2 answer. Both kinds are tried whatever the hint says
        (section 2.1 allows ignoring it): the shapes cannot be confused."""
        claims = self.access_tokens.current_claims(token)
        if claims is not None:
            return await self._access_token(claims)
        if len(token) > MAX_TOKEN_CHARS:
            return INACTIVE
        return await self._refresh_token(token)

    async def _access_token(self, claims: dict[str, Any]) -> dict[str, Any]:
        session_id = claims.get("sid")
        if session_id is not None:
            if not isinstance(session_id, str) or await self.families.family_revoked(session_id):
                return INACTIVE
        answer = {name: claims[name] for name in (*_TEXT_CLAIMS, *_TIME_CLAIMS)}
        return {"active": True, **answer, "token_type": "Bearer", "token_use": "access_token"}

    async def _refresh_token(self, token: str) -> dict[str, Any]:
        record = await self.families.refresh_token(opaque_hash(token))
        now = self.clock()
        if record is None or not record.active(now):
            return INACTIVE
        return {
            "active": True,
            "scope": record.scope,
            "client_id": record.client_id,
            "sub": record.account_id,
            "iss": self.settings.issuer,
            "iat": _epoch(record.issued_at),
            "exp": _epoch(record.expires_at),
            "token_use": "refresh_token",
        }


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())
