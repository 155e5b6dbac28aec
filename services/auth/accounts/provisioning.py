"""Profile provisioning at the users service, the one call auth makes to another service.

Contract (common.md): PUT {users}/internal/profiles/{id} with {"username", "display_name"}
and identity headers asserting the `profiles:provision` scope, which no token can carry.
The users service answers 201 (created) or 200 (already there): the call is idempotent.
"""

from __future__ import annotations

import logging

import aiohttp

from common.context import REQUEST_ID_HEADER
from common.identity import Identity
from common.provisioning import PROVISIONING_CLIENT_ID, PROVISIONING_SCOPE
from common.tracing import TRACEPARENT, TraceContext

_LOGGER = logging.getLogger(__name__)


class ProfileProvisioner:
    def __init__(self, session: aiohttp.ClientSession, users_url: str) -> None:
        self.session = session
        self.users_url = users_url.rstrip("/")

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
        headers = Identity(
            user_id, frozenset({PROVISIONING_SCOPE}), PROVISIONING_CLIENT_ID
        ).to_headers()
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
