"""Spoofed identity headers never reach a backend, on any kind of path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.gateway_under_test import USER_ID, GatewayUnderTest

SPOOFED_NAMES = [
    "X-User-Id",
    "x-user-id",
    "X-USER-SCOPES",
    "X-User-Client-Id",
    "X-User-Token-Id",
    "X-User-Roles",
    "X-User-Admin",
    "X_User_Id",
    "x_user-scopes",
]
SPOOF_VALUE = "spoofed-6f9c"
ORIGIN = "https://app.example.com"


def spoofed(stack: GatewayUnderTest, *, token: bool) -> list[tuple[str, str]]:
    headers = [(name, SPOOF_VALUE) for name in SPOOFED_NAMES]
    headers.append(("Connection", "X-User-Id"))  # listing it in Connection changes nothing
    if token:
        headers.append(("Authorization", f"Bearer {stack.token(scope='users:read')}"))
    return headers


# (kind, method, path, with a token, expected status, reaches a backend)
PATHS = [
    ("public", "POST", "/auth/login", False, 201, True),
    ("public-get", "GET", "/.well-known/jwks.json", False, 200, True),
    ("private", "GET", "/users/me", True, 200, True),
    ("private-no-scope", "POST", "/orders", True, 403, False),
    ("error-no-token", "GET", "/orders", False, 401, False),
    ("error-bad-token", "GET", "/orders/00000000-0000-4000-8000-000000000001", None, 401, False),
    ("unmatched", "GET", "/no/such/path", True, 404, False),
    ("internal", "PUT", "/internal/profiles/1", False, 404, False),
    ("method-not-allowed", "DELETE", "/users/me", True, 405, False),
    ("health", "GET", "/healthz", False, 200, False),
]


@pytest.mark.parametrize(("kind", "method", "path", "token", "status", "forwarded"), PATHS,
                         ids=[p[0] for p in PATHS])
async def test_spoofed_identity_headers_never_arrive(
    make_gateway, kind: str, method: str, path: str, token: bool | None, status: int, forwarded: bool
) -> None:
    stack = await make_gateway(cors_origins=(ORIGIN,))
    headers: list[tuple[str, Any]] = spoofed(stack, token=bool(token))
    if token is None:
        headers.append(("Authorization", "Bearer not-a-jwt"))
    response = await stack.client.request(method, path, headers=headers)
    assert response.status == status
    assert len(stack.log) == (1 if forwarded else 0)
    for record in stack.log:
        values = [value for _, value in record["headers"]]
        assert SPOOF_VALUE not in values
        names = [name.lower().replace("_", "-") for name, _ in record["headers"]]
        if kind == "private":
            assert names.count("x-user-id") == 1
            assert dict(record["headers"])["X-User-Id"] == USER_ID
            assert names.count("x-user-scopes") == 1
        else:
            assert not any(name.startswith("x-user-") for name in names)


async def test_spoofed_headers_on_preflight_never_arrive(make_gateway) -> None:
    """A preflight is answered by the gateway itself: nothing reaches a backend."""
    stack = await make_gateway(cors_origins=(ORIGIN,))
    headers = spoofed(stack, token=False) + [
        ("Origin", ORIGIN),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization, content-type"),
    ]
    response = await stack.client.options("/orders", headers=headers)
    assert response.status == 200
    assert stack.log == []


async def test_identity_is_set_only_from_the_token(make_gateway) -> None:
    """With spoofed headers and a valid token, the backend sees the token's identity alone."""
    stack = await make_gateway()
    headers = spoofed(stack, token=True)
    response = await stack.client.get("/users/me", headers=headers)
    body = await response.json()
    seen = [(k.lower(), v) for k, v in body["headers"] if k.lower().startswith("x-user")]
    assert sorted(k for k, _ in seen) == [
        "x-user-client-id", "x-user-id", "x-user-issuer", "x-user-scopes", "x-user-token-id"
    ]
    assert dict(seen)["x-user-scopes"] == "users:read"
    assert dict(seen)["x-user-issuer"] == "passgate"
