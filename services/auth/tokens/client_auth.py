"""Which OAuth client is calling the token, revocation or introspection endpoint
(RFC 6749 section 2.3).

A confidential client authenticates with HTTP Basic (`client_secret_basic`) or with
`client_id` and `client_secret` in the form (`client_secret_post`), never both (section
2.3). The first-party public client (the browser page that logs in with a password) has no
secret and names itself with `client_id` alone (`none`), as it does implicitly at the token
endpoint.

Failed authentications are counted per source address in the login throttle's store
(database or Redis, shared by every replica): past `PASSGATE_LOGIN_MAX_FAILURES_PER_ADDRESS`
failures in the window, the address answers 429 without any secret being checked. Not per
client id: a 256-bit secret cannot be guessed anyway, and a per-client lock would let anyone
who knows a resource server's id lock it out of introspection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

from aiohttp import web

from common.timestamps import Clock
from services.auth.accounts.throttle import LoginThrottle, address_key, client_address
from services.auth.settings import AuthSettings
from services.auth.tokens.clients import ClientRepository
from services.auth.tokens.minter import FIRST_PARTY_CLIENT_ID
from services.auth.tokens.oauth import OAuthError, basic_credentials, invalid_client

# What discovery lists for the endpoints that use this module.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


@dataclasses.dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    client_id: str
    confidential: bool
    scope: str = ""  # what the client-credentials grant may issue it
    may_introspect: bool = False


def failure_key(address: str) -> str:
    """The throttle key of failed client authentications from one address (IPv6 per /64),
    apart from the failed logins counted on the same address."""
    return hashlib.sha256(f"client-auth:{address_key(address)}".encode()).hexdigest()


def _presented(request: web.Request, form: dict[str, str]) -> tuple[str, str | None] | None:
    """(client_id, secret or None for a public client), or None when nothing was presented."""
    scheme = request.headers.get("Authorization", "").partition(" ")[0]
    if scheme.lower() == "basic":
        if "client_secret" in form:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        client_id, secret = basic_credentials(request)
        if form.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the HTTP Basic user")
        return client_id, secret
    if "client_id" not in form:
        if "client_secret" in form:
            raise invalid_client("client_secret without client_id")
        return None
    return form["client_id"], form.get("client_secret") or None


class ClientAuthentication:
    def __init__(
        self,
        settings: AuthSettings,
        clients: ClientRepository,
        throttle: LoginThrottle,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.throttle = throttle
        self.clock = clock

    async def authenticate(self, request: web.Request, form: dict[str, str]) -> AuthenticatedClient:
        """The calling client; raises OAuthError (401 invalid_client, 429 when throttled)."""
        presented = _presented(request, form)
        if presented is None:
            raise invalid_client("client authentication is required")
        client_id, secret = presented
        if secret is None:
            if client_id != FIRST_PARTY_CLIENT_ID:
                raise invalid_client("this client must authenticate with its secret")
            return AuthenticatedClient(client_id, confidential=False)
        key = failure_key(client_address(request, self.settings.trusted_proxies))
        now = self.clock()
        wait = await self.throttle.retry_after([key], now)
        if wait is not None:
            seconds = str(max(1, math.ceil(wait)))
            raise OAuthError(
                "invalid_client",
                "too many failed client authentications from this address; retry later",
                status=429,
                headers={"Retry-After": seconds},
            )
        client = await self.clients.authenticate(client_id, secret)
        if client is None:
            await self.throttle.failed([(key, self.settings.login_max_failures_per_address)], now)
            raise invalid_client()
        return AuthenticatedClient(client.client_id, True, client.scope, client.may_introspect)
