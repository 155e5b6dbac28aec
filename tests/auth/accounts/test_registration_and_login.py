"""Registration, profile provisioning, login, access-token claims, password change."""

from __future__ import annotations

import jwt
import pytest

from services.auth.accounts.password_policy import check_password
from services.auth.settings import Argon2Settings
from tests.support.auth_client import USER_SCOPES, decode, identity_headers, login, register, stored_password_hash
from tests.support.http import PASSWORD


async def test_register_provisions_the_profile_at_the_users_service(
    auth_client, users_service
) -> None:
    """Registration creates the account, then PUTs the profile with the provisioning identity."""
    client = await auth_client(users_url=users_service.url)
    response = await client.post(
        "/auth/register",
        json={"username": "alice", "password": PASSWORD, "display_name": "Alice A."},
        headers={"X-Request-Id": "req-register-1"},
    )
    assert response.status == 201
    body = await response.json()
    assert set(body) == {"id", "username"} and body["username"] == "alice"
    [call] = users_service.calls
    [headers] = users_service.headers
    assert call["user_id"] == body["id"]
    assert call["body"] == {"username": "alice", "display_name": "Alice A."}
    assert headers["X-User-Id"] == body["id"]
    assert headers["X-User-Scopes"] == "profiles:provision"
    assert headers["X-User-Client-Id"] == "passgate-auth"
    assert headers["X-Request-Id"] == "req-register-1"
    assert "traceparent" in headers
    assert "Authorization" not in headers
    assert PASSWORD not in str(call) + str(headers)


async def test_failed_provisioning_removes_the_account_and_answers_503(
    auth_client, users_service
) -> None:
    """An account never exists without its profile: 503, and the name is free again."""
    client = await auth_client(users_url=users_service.url)
    users_service.status = 500
    response = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert "Retry-After" in response.headers
    login_response = await client.post(
        "/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert login_response.status == 401
    users_service.status = 201
    await register(client)
    assert len(users_service.calls) == 2


async def test_unreachable_users_service_is_a_503(auth_client, unused_tcp_port) -> None:
    client = await auth_client(users_url=f"http://127.0.0.1:{unused_tcp_port}")
    response = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert response.status == 503


async def test_register_rejects_taken_names_bad_input_and_the_username_as_password(
    auth_client,
) -> None:
    client = await auth_client()
    await register(client)
    taken = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert taken.status == 409
    cases = [
        {"username": "al", "password": PASSWORD},
        {"username": "Alice", "password": PASSWORD},
        {"username": "bob", "password": "short"},
        {"username": "bob", "password": "x" * 257},
        {"username": "bob", "password": PASSWORD, "role": "admin"},
        {"username": "bobbybobbybob", "password": "bobbybobbybob"},
        {"username": "bob", "password": "aaaaaaaaaaaaaaa"},
    ]
    for body in cases:
        response = await client.post("/auth/register", json=body)
        assert response.status == 400, body
        assert response.content_type == "application/problem+json"
        assert body["password"] not in await response.text()
    not_json = await client.post("/auth/register", data="username=bob")
    assert not_json.status == 415


def test_password_policy_refuses_the_username_in_any_case() -> None:
    with pytest.raises(ValueError):
        check_password("carol.smith12", "CAROL.SMITH12")
    check_password("carol", "a much longer passphrase")


async def test_login_issues_an_rfc9068_access_token_and_a_refresh_token(auth_client, clock) -> None:
    client = await auth_client()
    user_id = await register(client)
    response = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["scope"] == USER_SCOPES
    assert body["refresh_token"].startswith("pgr_") and len(body["refresh_token"]) >= 47
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256" and header["kid"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    claims = decode(body["access_token"], jwks)
    assert claims["sub"] == user_id
    assert claims["scope"] == USER_SCOPES
    assert claims["client_id"] == "passgate"
    assert claims["iat"] == claims["nbf"] == int(clock().timestamp())
    assert claims["exp"] - claims["iat"] == 600


async def test_wrong_password_and_unknown_user_get_the_same_answer(auth_client) -> None:
    client = await auth_client()
    await register(client)
    answers = []
    for username, password in [
        ("alice", "wrong password 123"),
        ("nobody", PASSWORD),
        ("NOT VALID!", "x"),
    ]:
        response = await client.post(
            "/auth/login", json={"username": username, "password": password}
        )
        body = await response.json(content_type=None)
        answers.append(
            (
                response.status,
                response.content_type,
                response.headers.get("WWW-Authenticate"),
                {k: v for k, v in body.items() if k not in {"request_id", "trace_id"}},
            )
        )
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401


async def test_login_rehashes_a_hash_made_with_older_parameters(
    auth_client, make_settings, tmp_path
) -> None:
    """Raising the Argon2 cost upgrades each hash at its owner's next successful login."""
    client = await auth_client()
    await register(client)
    await client.close()
    stronger = Argon2Settings(time_cost=2, memory_cost=16, parallelism=1)
    client = await auth_client(argon2=stronger)
    await login(client)
    stored = await stored_password_hash(tmp_path / "auth.db")
    assert stored.startswith("$argon2id$") and "m=16,t=2,p=1" in stored
    await login(client)


async def test_password_change_needs_identity_and_revokes_every_refresh_token(auth_client) -> None:
    client = await auth_client()
    user_id = await register(client)
    first, second = await login(client), await login(client)
    no_identity = await client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "a new passphrase"}
    )
    assert no_identity.status == 401
    narrowed = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "a new passphrase"},
        headers=identity_headers(user_id, "orders:read"),
    )
    assert narrowed.status == 403
    wrong = await client.post(
        "/auth/password",
        json={"current_password": "not my password", "new_password": "a new passphrase"},
        headers=identity_headers(user_id),
    )
    assert wrong.status == 401
    changed = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "a new passphrase"},
        headers=identity_headers(user_id),
    )
    assert changed.status == 204
    for pair in (first, second):
        response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert response.status == 401
    assert (
        await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    ).status == 401
    await login(client, password="a new passphrase")
