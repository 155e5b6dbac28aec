"""Auth's guarantees as a client of the running gateway sees them: key rotation, machine clients."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import aiohttp
import jwt

from devstack.stack import ROOT, Stack
from tests.support.http import PASSWORD, assert_problem, bearer, register_and_login


def auth_command(stack: Stack, *args: str) -> dict:
    """Run an operator command of auth (`python -m services.auth ...`) with auth's settings."""
    env = {**os.environ, **stack.processes["auth-1"].env}
    result = subprocess.run(
        [sys.executable, "-m", "services.auth", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


async def login_at_auth(session: aiohttp.ClientSession, stack: Stack, username: str) -> str:
    # Straight to auth: this loop logs in many times and must not meet the gateway's
    # per-route rate limit; the tokens are then used through the gateway.
    async with session.post(
        f"{stack.url('auth')}/auth/login", json={"username": username, "password": PASSWORD}
    ) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["access_token"])


async def published_kids(session: aiohttp.ClientSession, stack: Stack) -> set[str]:
    async with session.get(f"{stack.gateway_url}/.well-known/jwks.json") as response:
        return {key["kid"] for key in (await response.json())["keys"]}


async def test_key_rotation_through_a_running_gateway(stack: Stack) -> None:
    """Published before it signs; new-key tokens accepted with no restart; old ones keep working."""
    username = f"rotate-{uuid.uuid4().hex[:10]}"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{stack.gateway_url}/auth/register", json={"username": username, "password": PASSWORD}
        ) as response:
            assert response.status == 201
        old_token = await login_at_auth(session, stack, username)
        old_kid = jwt.get_unverified_header(old_token)["kid"]

        new_kid = auth_command(stack, "rotate-keys", "--lead", "3")["kid"]
        assert new_kid != old_kid

        new_token = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            published_before = await published_kids(session, stack)
            token = await login_at_auth(session, stack, username)
            kid = jwt.get_unverified_header(token)["kid"]
            # Never signed with a key the JWKS did not already show.
            assert kid in published_before, f"{kid} signed before it was published"
            if kid == new_kid:
                new_token = token
                break
            await asyncio.sleep(0.5)
        assert new_token is not None, "the new key never started signing"

        for token in (new_token, old_token):
            async with session.get(f"{stack.gateway_url}/orders", headers=bearer(token)) as response:
                assert response.status == 200, await response.text()


async def test_client_credentials_token_is_held_to_its_scopes(stack: Stack) -> None:
    client_id = f"reporting-{uuid.uuid4().hex[:8]}"
    created = auth_command(stack, "create-client", client_id, "--scope", "orders:read")
    basic = {"Authorization": aiohttp.encode_basic_auth(client_id, created["client_secret"])}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{stack.gateway_url}/auth/token", data={"grant_type": "client_credentials"}, headers=basic
        ) as response:
            assert response.status == 200, await response.text()
            tokens = await response.json()
        assert tokens["scope"] == "orders:read" and "refresh_token" not in tokens
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["client_id"] == client_id

        headers = bearer(tokens["access_token"])
        async with session.get(f"{stack.gateway_url}/orders", headers=headers) as response:
            assert response.status == 200
        body = {"items": [{"sku": "a", "quantity": 1, "unit_price_cents": 1}]}
        async with session.post(f"{stack.gateway_url}/orders", json=body, headers=headers) as response:
            problem = await assert_problem(response, 403)
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
            assert problem["error"] == "insufficient_scope"

        wrong = {"Authorization": aiohttp.encode_basic_auth(client_id, "not-the-secret")}
        async with session.post(
            f"{stack.gateway_url}/auth/token", data={"grant_type": "client_credentials"}, headers=wrong
        ) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "invalid_client"


async def test_logout_everywhere_through_the_gateway(stack: Stack) -> None:
    """With a token, logout-all revokes every refresh token of the caller; without one, 401."""
    gw = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        _, first = await register_and_login(session, gw)
        async with session.post(f"{gw}/auth/logout-all") as response:
            await assert_problem(response, 401)
        async with session.post(
            f"{gw}/auth/logout-all", headers=bearer(first["access_token"])
        ) as response:
            assert response.status == 204, await response.text()
        async with session.post(
            f"{gw}/auth/refresh", json={"refresh_token": first["refresh_token"]}
        ) as response:
            await assert_problem(response, 401)
