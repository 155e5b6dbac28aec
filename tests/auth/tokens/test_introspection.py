"""POST /auth/introspect (RFC 7662): resource servers only; active tokens described,
everything else {"active": false} alone; a revoked login's access tokens are inactive."""

from __future__ import annotations

import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from services.auth.app_keys import KEY_RING, OPENAPI
from tests.support.auth_client import add_client, basic, identity_headers, introspect, login, register, revoke
from tests.support.http import PASSWORD

INACTIVE = {"active": False}
ACCESS_FIELDS = {
    "active", "scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti",
    "token_type", "token_use",
}


async def resource_server(client) -> tuple[str, str]:
    return "reports-api", await add_client(client, "reports-api", "", may_introspect=True)


async def test_a_users_tokens_through_their_life(auth_client, database_url) -> None:
    client = await auth_client(database_url=database_url)
    server_id, secret = await resource_server(client)
    user_id = await register(client)
    pair = await login(client)

    answer = await introspect(client, pair["access_token"], server_id, secret)
    client.server.app[OPENAPI].check("Introspection", answer)
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert set(answer) == ACCESS_FIELDS
    assert answer == {
        "active": True,
        **{name: claims[name] for name in ACCESS_FIELDS - {"active", "token_type", "token_use"}},
        "token_type": "Bearer",
        "token_use": "access_token",
    }
    assert answer["sub"] == user_id and answer["client_id"] == "passgate"

    refresh_answer = await introspect(client, pair["refresh_token"], server_id, secret)
    client.server.app[OPENAPI].check("Introspection", refresh_answer)
    assert refresh_answer["active"] is True and refresh_answer["token_use"] == "refresh_token"
    assert refresh_answer["sub"] == user_id and refresh_answer["scope"] == answer["scope"]
    assert refresh_answer["exp"] > refresh_answer["iat"] and "token_type" not in refresh_answer

    # Rotation spends the old refresh token; the login's access tokens stay active.
    rotated = await (
        await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).json()
    assert await introspect(client, pair["refresh_token"], server_id, secret) == INACTIVE
    assert (await introspect(client, rotated["access_token"], server_id, secret))["active"]

    # Revoking the login makes every access token of it inactive, old and new alike.
    assert (await revoke(client, rotated["refresh_token"])).status == 200
    for token in (pair["access_token"], rotated["access_token"], rotated["refresh_token"]):
        assert await introspect(client, token, server_id, secret) == INACTIVE


async def test_logout_and_password_change_end_introspection_too(auth_client) -> None:
    client = await auth_client()
    server_id, secret = await resource_server(client)
    user_id = await register(client)
    pair = await login(client)
    other = await login(client)
    await client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert await introspect(client, pair["access_token"], server_id, secret) == INACTIVE
    assert (await introspect(client, other["access_token"], server_id, secret))["active"]
    changed = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "a much longer passphrase 42"},
        headers=identity_headers(user_id),
    )
    assert changed.status == 204, await changed.text()
    assert await introspect(client, other["access_token"], server_id, secret) == INACTIVE


async def test_times_are_checked_with_the_leeway(auth_client, clock) -> None:
    client = await auth_client(access_token_ttl=300, token_leeway=30)
    server_id, secret = await resource_server(client)
    await register(client)
    pair = await login(client)
    clock.advance(300 + 29)
    assert (await introspect(client, pair["access_token"], server_id, secret))["active"]
    clock.advance(2)
    assert await introspect(client, pair["access_token"], server_id, secret) == INACTIVE


async def test_machine_client_tokens_are_active_without_a_session(auth_client) -> None:
    client = await auth_client()
    server_id, secret = await resource_server(client)
    billing_secret = await add_client(client, "billing", "orders:read")
    issued = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("billing", billing_secret),
    )
    token = (await issued.json())["access_token"]
    answer = await introspect(client, token, server_id, secret, token_type_hint="refresh_token")
    assert answer["active"] and answer["client_id"] == answer["sub"] == "billing"
    assert answer["scope"] == "orders:read"


def _forge(claims: dict, key, *, kid: str, typ: str = "at+jwt", alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": typ})


async def test_anything_not_ours_or_not_active_says_nothing_more(auth_client, clock) -> None:
    client = await auth_client()
    server_id, secret = await resource_server(client)
    await register(client)
    pair = await login(client)
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    ours = next(k for k in client.server.app[KEY_RING].keys if k.kid == kid).private_key
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(clock().timestamp())
    forged = [
        _forge(claims, stranger, kid=kid),  # a key that is not ours, under our kid
        _forge(claims, ours, kid="unknown-kid"),
        _forge(claims, ours, kid=kid, typ="JWT"),  # an ID token or other JWT, not at+jwt
        _forge({**claims, "aud": "elsewhere"}, ours, kid=kid),
        _forge({**claims, "iss": "https://evil.example"}, ours, kid=kid),
        _forge({**claims, "nbf": now + 3600}, ours, kid=kid),
        _forge({**claims, "iat": now + 3600}, ours, kid=kid),
        _forge({**claims, "exp": str(claims["exp"])}, ours, kid=kid),
        _forge({k: v for k, v in claims.items() if k != "jti"}, ours, kid=kid),
        _forge({**claims, "sid": str(uuid.uuid4())}, ours, kid=kid) + "x",  # broken signature
        _forge({**claims, "sid": 7}, ours, kid=kid),
        jwt.encode(claims, None, algorithm="none", headers={"kid": kid, "typ": "at+jwt"}),
        "pgr_" + "A" * 43,
        "garbage",
        "x" * 10_000,
    ]
    for token in forged:
        response = await client.post(
            "/auth/introspect", data={"token": token}, headers=basic(server_id, secret)
        )
        assert response.status == 200
        assert await response.json() == INACTIVE, token[:80]
    # The genuine token, for contrast, is active.
    assert (await introspect(client, pair["access_token"], server_id, secret))["active"]


async def test_only_resource_servers_may_introspect(auth_client) -> None:
    client = await auth_client()
    server_id, secret = await resource_server(client)
    billing_secret = await add_client(client, "billing", "orders:read")
    await register(client)
    token = (await login(client))["access_token"]
    for headers, form in (
        (basic("billing", billing_secret), {}),  # a client, but no resource server
        ({}, {"client_id": "passgate"}),  # the public client
    ):
        response = await client.post(
            "/auth/introspect", data={"token": token, **form}, headers=headers
        )
        assert response.status == 403
        assert (await response.json())["error"] == "unauthorized_client"
        assert "active" not in await response.text()
    for headers, form in (
        ({}, {}),
        (basic(server_id, "pgs_wrong"), {}),
        ({}, {"client_id": server_id}),
    ):
        response = await client.post(
            "/auth/introspect", data={"token": token, **form}, headers=headers
        )
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert (await response.json())["error"] == "invalid_client"
    # client_secret_post works as well as Basic.
    response = await client.post(
        "/auth/introspect",
        data={"token": token, "client_id": server_id, "client_secret": secret},
    )
    assert response.status == 200 and (await response.json())["active"] is True


async def test_discovery_lists_both_endpoints(auth_client) -> None:
    client = await auth_client()
    body = await (await client.get("/.well-known/openid-configuration")).json()
    assert body["revocation_endpoint"] == "http://gateway.test/auth/revoke"
    assert body["introspection_endpoint"] == "http://gateway.test/auth/introspect"
    assert set(body["revocation_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "none",
    }
    assert set(body["introspection_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post",
    }
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "none",
    }
    client.server.app[OPENAPI].check("Discovery", body)
    # Every advertised endpoint is served here.
    for name in ("revocation_endpoint", "introspection_endpoint"):
        path = body[name].removeprefix("http://gateway.test")
        assert (await client.post(path, data={"token": "t"})).status == 401
