"""POST /auth/token: RFC 6749 form encoding, HTTP Basic client auth and section 5.2 errors."""

from __future__ import annotations

import base64

from services.auth.app_keys import OPENAPI
from tests.support.auth_client import add_client, basic, login, register


async def test_client_credentials_errors_follow_rfc6749(auth_client) -> None:
    client = await auth_client()
    secret = await add_client(client, "billing", "orders:read")
    cases = [
        ({}, {"grant_type": "client_credentials"}, 401, "invalid_client"),
        (
            basic("billing", "pgs_wrong"),
            {"grant_type": "client_credentials"},
            401,
            "invalid_client",
        ),
        (basic("nobody", secret), {"grant_type": "client_credentials"}, 401, "invalid_client"),
        (
            {"Authorization": "Basic %%%"},
            {"grant_type": "client_credentials"},
            401,
            "invalid_client",
        ),
        (
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
            {"grant_type": "client_credentials"},
            401,
            "invalid_client",
        ),
        (basic("billing", secret), {"grant_type": "password"}, 400, "unsupported_grant_type"),
        (basic("billing", secret), {}, 400, "invalid_request"),
        (basic("billing", secret), {"grant_type": "refresh_token"}, 400, "invalid_request"),
        (
            basic("billing", secret),
            {"grant_type": "client_credentials", "scope": ""},
            400,
            "invalid_scope",
        ),
    ]
    for headers, form, status, error in cases:
        response = await client.post("/auth/token", data=form, headers=headers)
        assert response.status == status, (form, headers)
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
        assert set(body) == {"error", "error_description"} and body["error"] == error
        assert secret not in await response.text()
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Basic ")

    json_body = await client.post(
        "/auth/token", json={"grant_type": "client_credentials"}, headers=basic("billing", secret)
    )
    assert json_body.status == 400 and (await json_body.json())["error"] == "invalid_request"
    repeated = await client.post(
        "/auth/token",
        data="grant_type=client_credentials&grant_type=client_credentials",
        headers={**basic("billing", secret), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (await repeated.json())["error"] == "invalid_request"
    # Unknown parameters are ignored (RFC 6749 section 3.2).
    extra = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "audience": "x"},
        headers=basic("billing", secret),
    )
    assert extra.status == 200


async def test_refresh_token_grant_rotates_like_auth_refresh(auth_client) -> None:
    client = await auth_client()
    await register(client)
    pair = await login(client)
    response = await client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    reused = await client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    assert reused.status == 400
    assert (await reused.json())["error"] == "invalid_grant"
    # Reuse revoked the family: the new token is dead too.
    dead = await client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert (await dead.json())["error"] == "invalid_grant"
    metrics = await (await client.get("/metrics")).text()
    assert 'auth_tokens_issued_total{grant_type="refresh_token"} 1.0' in metrics


async def test_discovery_document(auth_client) -> None:
    client = await auth_client()
    response = await client.get("/.well-known/openid-configuration")
    assert response.status == 200
    body = await response.json()
    assert body["issuer"] == "http://gateway.test"
    assert body["jwks_uri"] == "http://gateway.test/.well-known/jwks.json"
    assert body["token_endpoint"] == "http://gateway.test/auth/token"
    assert set(body["grant_types_supported"]) == {"client_credentials", "refresh_token"}
    assert body["id_token_signing_alg_values_supported"] == ["RS256"]
    assert (
        "admin" in body["scopes_supported"] and "profiles:provision" not in body["scopes_supported"]
    )
    client.server.app[OPENAPI].check("Discovery", body)  # matches its own published schema


async def test_an_access_token_offered_as_a_refresh_grant_is_an_invalid_grant(auth_client) -> None:
    """RFC 6749 section 5.2: a grant that is invalid, expired or revoked is invalid_grant,
    whatever it looks like; only a missing one is invalid_request."""
    client = await auth_client()
    await register(client)
    pair = await login(client)
    for grant in (pair["access_token"], "x" * 513, "pgr_" + "A" * 43, "not a token at all"):
        response = await client.post(
            "/auth/token", data={"grant_type": "refresh_token", "refresh_token": grant}
        )
        assert response.status == 400, grant
        assert (await response.json())["error"] == "invalid_grant"
        assert grant not in await response.text()
    for form in (
        {"grant_type": "refresh_token"},
        {"grant_type": "refresh_token", "refresh_token": ""},
    ):
        response = await client.post("/auth/token", data=form)
        assert (await response.json())["error"] == "invalid_request"


async def test_client_secret_post_and_throttled_client_failures(auth_client) -> None:
    """Section 2.3.1: the secret may come in the form; failed client authentications from
    one address are throttled like those of /auth/revoke and /auth/introspect."""
    client = await auth_client(login_max_failures_per_address=2)
    secret = await add_client(client, "billing", "orders:read")
    grant = {"grant_type": "client_credentials"}
    posted = await client.post(
        "/auth/token", data={**grant, "client_id": "billing", "client_secret": secret}
    )
    assert posted.status == 200 and (await posted.json())["scope"] == "orders:read"
    public = await client.post("/auth/token", data={**grant, "client_id": "passgate"})
    assert public.status == 401 and (await public.json())["error"] == "invalid_client"
    for _ in range(2):
        wrong = await client.post("/auth/token", data=grant, headers=basic("billing", "pgs_x"))
        assert wrong.status == 401
    locked = await client.post("/auth/token", data=grant, headers=basic("billing", secret))
    assert locked.status == 429 and int(locked.headers["Retry-After"]) >= 1
    assert (await locked.json())["error"] == "invalid_client"
    assert "access_token" not in await locked.text()
    # Refresh grants authenticate no client and are not held up.
    await register(client)
    pair = await login(client)
    refreshed = await client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status == 200
