"""The three steps of an external sign-in, as a page and a browser perform them."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from services.auth.app_keys import ACCOUNT_REPOSITORY

CALLBACK_BASE = "http://passgate.test"
APP_ORIGIN = "http://app.test"
RETURN_TO = f"{APP_ORIGIN}/demo/"


async def account_count(client: TestClient) -> int:
    engine = client.server.app[ACCOUNT_REPOSITORY].engine
    async with engine.connect() as connection:
        return (await connection.execute(sa.text("SELECT count(*) FROM accounts"))).scalar()


def new_binding() -> tuple[str, str]:
    """(verifier, challenge): what the page keeps, and what it sends at the start."""
    verifier = secrets.token_urlsafe(32)
    return verifier, create_s256_code_challenge(verifier)


async def start(
    client: TestClient, provider_id: str, *, link_headers: dict[str, str] | None = None
) -> tuple[str, str]:
    """(authorization URL, binding verifier)."""
    verifier, challenge = new_binding()
    path = f"/auth/oidc/{provider_id}/{'link' if link_headers else 'start'}"
    response = await client.post(
        path,
        json={"return_to": RETURN_TO, "binding_challenge": challenge},
        headers=link_headers or {},
    )
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return (await response.json())["authorization_url"], verifier


async def visit_fake(authorization_url: str) -> str:
    """The browser at the fake provider (which consents at once): the redirect back."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(authorization_url, allow_redirects=False) as response,
    ):
        assert response.status == 302, await response.text()
        return response.headers["Location"]


async def callback(client: TestClient, redirect_url: str) -> aiohttp.ClientResponse:
    """The browser arriving at the callback (the provider's redirect), not following on."""
    assert redirect_url.startswith(CALLBACK_BASE), redirect_url
    parts = urlsplit(redirect_url)
    return await client.get(f"{parts.path}?{parts.query}", allow_redirects=False)


def fragment(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The page's URL fragment after the callback's 303."""
    assert response.status == 303, response.status
    location = response.headers["Location"]
    page, _, frag = location.partition("#")
    assert page == RETURN_TO
    return dict(parse_qsl(frag))


async def exchange(client: TestClient, code: str, verifier: str) -> aiohttp.ClientResponse:
    return await client.post(
        "/auth/oidc/exchange", json={"code": code, "binding_verifier": verifier}
    )


async def sign_in_with_fake(
    client: TestClient, provider_id: str = "fake", **start_options: Any
) -> tuple[dict[str, str], str]:
    """Start, visit the fake provider, arrive at the callback: (fragment, verifier)."""
    url, verifier = await start(client, provider_id, **start_options)
    response = await callback(client, await visit_fake(url))
    return fragment(response), verifier


async def tokens_with_fake(client: TestClient, provider_id: str = "fake", **options: Any) -> dict:
    result, verifier = await sign_in_with_fake(client, provider_id, **options)
    assert "oidc_code" in result, result
    response = await exchange(client, result["oidc_code"], verifier)
    assert response.status == 200, await response.text()
    return await response.json()
