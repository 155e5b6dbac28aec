"""Profile provisioning at the users service, the one call auth makes to another service.

Contract (common.md): PUT {users}/internal/profiles/{id} with {"username", "display_name"}
and an identity assertion (common.assertion) with the `profiles:provision` scope, which no
token can carry. The users service answers 201 (created) or 200 (already there): the call
is idempotent.

Auth signs that assertion with an assertion key of its own (issuer passgate-auth), not the
gateway's: each private key then lives in one component's Secret only, and the issuer
tells users who vouched. Auth already mints every access token, so trusting it to vouch
for a provisioning call gives it nothing it did not have.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiohttp

from common.assertion import AUTH_ISSUER, AssertionSigner, signer_from_settings
from common.context import REQUEST_ID_HEADER
from common.identity import ASSERTION_HEADER, Identity
from common.provisioning import PROVISIONING_CLIENT_ID, PROVISIONING_SCOPE
from common.tracing import TRACEPARENT, TraceContext

if TYPE_CHECKING:
    from services.auth.settings import AuthSettings

_LOGGER = logging.getLogger(__name__)


class ProfileProvisioner:
    def __init__(
        self, session: aiohttp.ClientSession, users_url: str, signer: AssertionSigner | None = None
    ) -> None:
        self.session = session
        self.users_url = users_url.rstrip("/")
        self.signer = signer

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession, settings: AuthSettings) -> ProfileProvisioner:
        assert settings.users_url is not None
        signer = signer_from_settings(settings.assertion_signing, issuer=AUTH_ISSUER)
        if signer is None:
            _LOGGER.warning("no PASSGATE_ASSERTION_KEYS_DIR: the users service will refuse provisioning")
        return cls(session, settings.users_url, signer)

    async def provision(
        self,
        user_id: str,
        username: str,
        display_name: str,
        *,
        request_id: str | None,
        trace: TraceContext | None,
    ) -> bool:
        """True when the users service holds the profile; False on any failure."""
        identity = Identity(user_id, frozenset({PROVISIONING_SCOPE}), PROVISIONING_CLIENT_ID)
        headers = identity.to_headers()
        if self.signer is not None:
            headers[ASSERTION_HEADER] = self.signer.sign(identity).token
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if trace:
            headers[TRACEPARENT] = trace.traceparent()
        url = f"{self.users_url}/internal/profiles/{user_id}"
        try:
            async with self.session.put(
                url,
                json={"username": username, "display_name": display_name},
                headers=headers,
                allow_redirects=False,
            ) as response:
                if response.status in (200, 201):
                    return True
                _LOGGER.warning("profile provisioning refused", extra={"status": response.status})
        except (TimeoutError, aiohttp.ClientError) as error:
            _LOGGER.warning("profile provisioning failed", extra={"error": type(error).__name__})
        return False
