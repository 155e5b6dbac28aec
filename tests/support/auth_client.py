"""The auth service in process, through a pytest-aiohttp TestClient: register, log in,
verify what it issued, add machine clients, revoke and introspect as an OAuth client (the fixtures are in tests/auth/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from jwt import PyJWKSet

from common.db import create_engine
from common.identity import Identity
from services.auth.settings import Argon2Settings
from tests.support.http import PASSWORD
from tests.support.identity_headers import assertion_headers

# The cheapest Argon2id the library accepts: tests stay fast, the code path is the same.
CHEAP_ARGON2_SETTINGS = Argon2Settings(time_cost=1, memory_cost=8, parallelism=1)
USER_SCOPES = "orders:read orders:write users:read users:write"


async def register(client: TestClient, username: str = "alice", password: str = PASSWORD) -> str:
    response = await client.post(
        "/auth/register", json={"username": username, "password": password}
    )
    assert response.status == 201, await response.text()
    return (await response.json())["id"]


async def login(
    client: TestClient, username: str = "alice", password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/auth/login", json={"username": username, "password": password, **extra}
    )
    assert response.status == 200, await response.text()
    return await response.json()


def identity_headers(user_id: str, scopes: str = USER_SCOPES) -> dict[str, str]:
    """What the gateway sends after verifying a token: a signed identity assertion."""
    return assertion_headers(Identity(user_id, frozenset(scopes.split()), client_id="passgate"))


def decode(
    token: str,
    jwks: dict[str, Any],
    *,
    audience: str = "passgate",
    issuer: str = "http://gateway.test",
) -> dict[str, Any]:
    """Verify a token against a JWK Set as a gateway would (wall-clock checks aside)."""
    header = jwt.get_unverified_header(token)
    key = PyJWKSet.from_dict(jwks)[header["kid"]]
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        # The injected clock runs in 2030: check the signature and claims, not wall time.
        options={
            "require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        },
    )


async def add_client(
    client: TestClient, client_id: str, scope: str, *, may_introspect: bool = False
) -> str:
    """Create a machine client the way create-client does; returns its secret."""
    from services.auth.app_keys import CLIENT_REPOSITORY, CLOCK
    from services.auth.tokens.opaque import CLIENT_SECRET_PREFIX, new_secret, opaque_hash

    app = client.server.app
    secret = new_secret(CLIENT_SECRET_PREFIX)
    await app[CLIENT_REPOSITORY].create_client(
        client_id, opaque_hash(secret), scope, app[CLOCK](), may_introspect=may_introspect
    )
    return secret


def basic(client_id: str, secret: str) -> dict[str, str]:
    import base64
    from urllib.parse import quote_plus

    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def stored_password_hash(database: Path) -> str:
    """The one account's stored hash, read from its database file."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        async with engine.connect() as connection:
            return (
                await connection.execute(sa.text("SELECT password_hash FROM accounts"))
            ).scalar()
    finally:
        await engine.dispose()


# The first-party public client names itself; it has no secret.
FIRST_PARTY = {"client_id": "passgate"}


async def revoke(
    client: TestClient, token: str, *, headers: dict[str, str] | None = None, **form: str
) -> ClientResponse:
    """POST /auth/revoke; without `headers` or client fields, as the first-party page."""
    fields = form if (headers or "client_id" in form) else {**FIRST_PARTY, **form}
    return await client.post("/auth/revoke", data={"token": token, **fields}, headers=headers)


async def introspect(
    client: TestClient, token: str, client_id: str, secret: str, **form: str
) -> dict[str, Any]:
    """POST /auth/introspect as a resource server (HTTP Basic); the 200 answer's body."""
    response = await client.post(
        "/auth/introspect", data={"token": token, **form}, headers=basic(client_id, secret)
    )
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return dict(await response.json())
