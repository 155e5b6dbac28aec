"""RFC 7009 token revocation, for refresh tokens.

- A refresh token ends its whole family (the login it came from), like logout: the other
  tokens of a family are spent ones, useless already, and its one live successor, so
  "only this token" would either be the same thing or nothing at all. The access tokens
  of the family then introspect as inactive (services/auth/tokens/introspection.py).
- A token issued to another client is refused with invalid_grant (section 2.1 says the
  server checks the token was issued to the requesting client; RFC 6749 section 5.2 names
  a grant "issued to another client" invalid_grant) and stays valid.
- Unknown, spent, expired and already revoked tokens: 200, as for a revocation (section
  2.2), so the endpoint tells nobody which tokens exist.
- Access tokens: `unsupported_token_type` (section 2.2.1). They are JWTs the gateway
  verifies on its own until `exp` (at most 15 minutes): a 200 would claim a revocation
  that does not happen. Revoke the refresh token to end the session.
"""

from __future__ import annotations

from common.timestamps import Clock
from services.auth.tokens.families import RefreshFamilyRepository
from services.auth.tokens.introspection import MAX_TOKEN_CHARS, AccessTokens
from services.auth.tokens.oauth import OAuthError
from services.auth.tokens.opaque import opaque_hash

REVOKED_REASON = "revocation"


class TokenRevocation:
    def __init__(
        self, access_tokens: AccessTokens, families: RefreshFamilyRepository, clock: Clock
    ) -> None:
        self.access_tokens = access_tokens
        self.families = families
        self.clock = clock

    async def revoke(self, token: str, client_id: str) -> bool:
        """Revoke the family of `token` for `client_id`; True when a live family ended.

        Raises OAuthError for an access token and for another client's refresh token.
        """
        if self.access_tokens.signed_claims(token) is not None:
            raise OAuthError(
                "unsupported_token_type",
                "access tokens expire within minutes and cannot be revoked; "
                "revoke the refresh token to end the session",
            )
        if len(token) > MAX_TOKEN_CHARS:
            return False
        record = await self.families.refresh_token(opaque_hash(token))
        if record is None:
            return False
        if record.client_id != client_id:
            raise OAuthError("invalid_grant", "the token was issued to another client")
        if record.revoked:
            return False
        await self.families.revoke_family(record.family_id, self.clock(), REVOKED_REASON)
        return True
