"""HTTP steps every client-side test shares: a bearer header, the problem+json check, and
registering and logging in through a running gateway (or the auth service itself)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import aiohttp

PASSWORD = "correct horse battery staple"
PROBLEM_TYPE = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_problem(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status, carrying its request id."""
    text = await response.text()
    assert response.status == status, f"{response.method} {response.url}: {response.status} {text}"
    assert response.content_type == PROBLEM_TYPE, text
    body = await response.json(content_type=None)
    assert body["status"] == status
    assert body["request_id"] and body["request_id"] == response.headers["X-Request-Id"]
    return body


async def register(
    session: aiohttp.ClientSession, base: str, display_name: str = "End To End"
) -> tuple[str, str]:
    """A new account with a fresh username: (user id, username)."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    async with session.post(
        f"{base}/auth/register",
        json={"username": username, "password": PASSWORD, "display_name": display_name},
    ) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    assert set(created) >= {"id", "username"} and created["username"] == username
    return created["id"], username


async def login(session: aiohttp.ClientSession, base: str, username: str) -> dict[str, Any]:
    """The token response of a password login."""
    async with session.post(
        f"{base}/auth/login", json={"username": username, "password": PASSWORD}
    ) as response:
        assert response.status == 200, f"login at {base}: {response.status} {await response.text()}"
        tokens = await response.json()
    assert tokens["token_type"] == "Bearer"
    assert {"access_token", "expires_in", "refresh_token", "scope"} <= set(tokens)
    return tokens


async def register_and_login(session: aiohttp.ClientSession, base: str) -> tuple[str, dict]:
    user_id, username = await register(session, base)
    return user_id, await login(session, base, username)


async def refresh(
    session: aiohttp.ClientSession, base: str, refresh_token: str
) -> aiohttp.ClientResponse:
    async with session.post(f"{base}/auth/refresh", json={"refresh_token": refresh_token}) as response:
        await response.read()
        return response


@dataclasses.dataclass
class Account:
    username: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def new_account(session: aiohttp.ClientSession, base: str) -> Account:
    user_id, username = await register(session, base)
    tokens = await login(session, base, username)
    return Account(username, user_id, tokens["access_token"], tokens["refresh_token"])


async def status_of(session: aiohttp.ClientSession, url: str) -> int | None:
    """The status of a GET, or None when nothing accepts the connection."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None
