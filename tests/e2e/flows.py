"""Client steps the end-to-end tests share: register and log in, read a problem answer."""

from __future__ import annotations

import uuid

import aiohttp

PASSWORD = "correct horse battery staple"


async def register_and_login(session: aiohttp.ClientSession, gateway: str) -> tuple[str, dict]:
    username = f"user-{uuid.uuid4().hex[:12]}"
    async with session.post(
        f"{gateway}/auth/register",
        json={"username": username, "password": PASSWORD, "display_name": "End To End"},
    ) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
        assert set(created) >= {"id", "username"} and created["username"] == username
    async with session.post(
        f"{gateway}/auth/login", json={"username": username, "password": PASSWORD}
    ) as response:
        assert response.status == 200, await response.text()
        tokens = await response.json()
    assert tokens["token_type"] == "Bearer"
    assert {"access_token", "expires_in", "refresh_token", "scope"} <= set(tokens)
    return created["id"], tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_problem(response: aiohttp.ClientResponse, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body = await response.json(content_type=None)
    assert body["status"] == status and body["request_id"] == response.headers["X-Request-Id"]
    return body
