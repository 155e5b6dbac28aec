"""Access tokens (RFC 9068 JWTs) signed with the key ring's current key; nothing stored."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import jwt

from common.timestamps import Clock
from services.auth.accounts.roles import format_scope
from services.auth.keyring.signing_keys import ALGORITHM, KeyRing
from services.auth.settings import AuthSettings

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 section 2.1
# The client id in user tokens: the first-party apps that log in with a password.
FIRST_PARTY_CLIENT_ID = "passgate"


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


class AccessTokenMinter:
    """Signs access tokens: a pure function of the settings, the key ring and the clock."""

    def __init__(self, settings: AuthSettings, ring: KeyRing, clock: Clock) -> None:
        self.settings = settings
        self.ring = ring
        self.clock = clock

    def check_can_sign(self) -> None:
        """Raise NoSigningKeyError when no key may sign now: callers do it before they
        store or spend anything."""
        self.ring.signing_key(self.clock())

    def access_token(
        self,
        subject: str,
        scopes: frozenset[str],
        client_id: str,
        *,
        session_id: str | None = None,
    ) -> TokenResponse:
        """`session_id`: the refresh-token family the token comes from, as `sid`, so that
        introspection can call it inactive once that family is revoked."""
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
        if session_id is not None:
            claims["sid"] = session_id
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
        )
        return TokenResponse(token, ttl, claims["scope"])
