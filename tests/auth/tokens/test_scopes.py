"""Scopes: narrowing is allowed and widening refused, at login, refresh and client credentials."""

from __future__ import annotations

from common.scopes import parse_scope_policy
from services.auth.app_keys import ACCOUNT_REPOSITORY
from tests.support.http import PASSWORD
from tests.support.auth_client import USER_SCOPES, add_client, basic, decode, login, register


async def jwks(client) -> dict:
    return await (await client.get("/.well-known/jwks.json")).json()


async def test_login_narrows_and_refuses_to_widen(auth_client) -> None:
    client = await auth_client()
    await register(client)
    narrowed = await login(client, scope="orders:read")
    assert narrowed["scope"] == "orders:read"
    assert decode(narrowed["access_token"], await jwks(client))["scope"] == "orders:read"

    for scope in ("orders:read admin", "profiles:provision", "everything"):
        response = await client.post(
            "/auth/login",
            json={"username": "alice", "password": PASSWORD, "scope": scope},
        )
        assert response.status == 400, scope
        assert response.content_type == "application/problem+json"
        assert (await response.json())["error"] == "invalid_scope"
    malformed = await client.post(
        "/auth/login",
        json={"username": "alice", "password": PASSWORD, "scope": "a  b"},
    )
    assert malformed.status == 400


async def test_admins_get_the_admin_scope(auth_client) -> None:
    client = await auth_client()
    await register(client)
    assert await client.server.app[ACCOUNT_REPOSITORY].set_role("alice", "admin")
    pair = await login(client)
    assert pair["scope"] == "admin " + USER_SCOPES
    # A user may never ask for it.
    await register(client, "bob")
    response = await client.post(
        "/auth/login",
        json={"username": "bob", "password": PASSWORD, "scope": "admin"},
    )
    assert (await response.json())["error"] == "invalid_scope"


async def test_refresh_narrows_within_the_family_and_refuses_to_widen(auth_client) -> None:
    client = await auth_client()
    await register(client)
    pair = await login(client, scope="orders:read orders:write")
    widened = await client.post(
        "/auth/refresh",
        json={"refresh_token": pair["refresh_token"], "scope": "orders:read users:read"},
    )
    assert widened.status == 400
    assert (await widened.json())["error"] == "invalid_scope"
    # A refused request spends nothing: the token still works.
    narrowed = await client.post(
        "/auth/refresh", json={"refresh_token": pair["refresh_token"], "scope": "orders:read"}
    )
    assert narrowed.status == 200
    body = await narrowed.json()
    assert body["scope"] == "orders:read"
    # Narrowing the access token does not shrink the family: the next refresh may ask
    # for everything granted at login again (RFC 6749 section 6).
    again = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert (await again.json())["scope"] == "orders:read orders:write"


async def test_refresh_follows_a_demotion(auth_client) -> None:
    client = await auth_client()
    await register(client)
    repository = client.server.app[ACCOUNT_REPOSITORY]
    await repository.set_role("alice", "admin")
    pair = await login(client)
    await repository.set_role("alice", "user")
    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert (await response.json())["scope"] == USER_SCOPES


async def test_client_credentials_narrow_and_refuse_to_widen(auth_client) -> None:
    client = await auth_client()
    secret = await add_client(client, "reporting", "orders:read users:read")
    full = await client.post(
        "/auth/token", data={"grant_type": "client_credentials"}, headers=basic("reporting", secret)
    )
    assert full.status == 200
    body = await full.json()
    assert body["scope"] == "orders:read users:read" and "refresh_token" not in body
    claims = decode(body["access_token"], await jwks(client))
    assert claims["sub"] == "reporting" and claims["client_id"] == "reporting"

    narrow = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "orders:read"},
        headers=basic("reporting", secret),
    )
    assert (await narrow.json())["scope"] == "orders:read"
    wide = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "orders:read orders:write"},
        headers=basic("reporting", secret),
    )
    assert wide.status == 400
    assert await wide.json() == {
        "error": "invalid_scope",
        "error_description": "not granted: orders:write",
    }


async def test_roles_and_scopes_come_from_the_scopes_file(auth_client) -> None:
    """An operator's file decides what a new account's role is and what it is granted;
    the discovery document lists exactly the file's scopes."""
    policy = parse_scope_policy(
        {
            "scopes": {"notes:read": "read notes", "notes:write": "write notes"},
            "roles": {"reader": ["notes:read"], "editor": ["notes:read", "notes:write"]},
            "default_role": "reader",
        },
        source="scopes.yaml",
    )
    client = await auth_client(scope_policy=policy)
    await register(client)
    pair = await login(client)
    assert pair["scope"] == "notes:read"
    assert decode(pair["access_token"], await jwks(client))["scope"] == "notes:read"
    assert await client.server.app[ACCOUNT_REPOSITORY].set_role("alice", "editor")
    assert (await login(client))["scope"] == "notes:read notes:write"
    discovery = await (await client.get("/.well-known/openid-configuration")).json()
    assert discovery["scopes_supported"] == ["notes:read", "notes:write"]
