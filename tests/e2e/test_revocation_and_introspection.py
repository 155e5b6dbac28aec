"""RFC 7009 and RFC 7662 through the running gateway and auth: a resource server
introspects a user's token, the user revokes their refresh token, and from then on the
refresh fails and the login's access token introspects inactive."""

from __future__ import annotations

import uuid

import aiohttp

from devstack.stack import Stack
from tests.e2e.test_auth_through_gateway import auth_command
from tests.support.http import bearer, refresh, register_and_login


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


async def introspect(
    session: aiohttp.ClientSession, stack: Stack, token: str, auth: dict[str, str]
) -> dict:
    async with session.post(
        f"{stack.gateway_url}/auth/introspect", data={"token": token}, headers=auth
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        return dict(await response.json())


async def test_revoked_login_fails_to_refresh_and_introspects_inactive(stack: Stack) -> None:
    gw = stack.gateway_url
    server_id = f"reports-{uuid.uuid4().hex[:8]}"
    created = auth_command(stack, "create-client", server_id, "--introspect")
    assert created["may_introspect"] is True
    server = basic(server_id, created["client_secret"])
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gw}/.well-known/openid-configuration") as response:
            discovery = await response.json()
        assert discovery["revocation_endpoint"].endswith("/auth/revoke")
        assert discovery["introspection_endpoint"].endswith("/auth/introspect")

        user_id, tokens = await register_and_login(session, gw)
        answer = await introspect(session, stack, tokens["access_token"], server)
        assert answer["active"] is True and answer["sub"] == user_id
        assert answer["client_id"] == "passgate" and answer["token_type"] == "Bearer"

        # The page revokes its refresh token as the first-party public client.
        async with session.post(
            f"{gw}/auth/revoke",
            data={"token": tokens["refresh_token"], "client_id": "passgate"},
        ) as response:
            assert response.status == 200, await response.text()
            assert await response.read() == b""
            assert response.headers["Cache-Control"] == "no-store"
        assert (await refresh(session, gw, tokens["refresh_token"])).status == 401

        for token in (tokens["access_token"], tokens["refresh_token"]):
            assert await introspect(session, stack, token, server) == {"active": False}
        # The trade-off the README states: the gateway verifies access tokens itself, so
        # this one keeps working until its exp; a resource server that introspects knows.
        headers = bearer(tokens["access_token"])
        async with session.get(f"{gw}/users/me", headers=headers) as response:
            assert response.status == 200

        # client_secret_post works through the gateway too; a wrong secret is refused.
        async with session.post(
            f"{gw}/auth/introspect",
            data={"token": "x", "client_id": server_id, "client_secret": created["client_secret"]},
        ) as response:
            assert await response.json() == {"active": False}
        async with session.post(
            f"{gw}/auth/introspect", data={"token": "x"}, headers=basic(server_id, "pgs_wrong")
        ) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic ")
            assert (await response.json())["error"] == "invalid_client"
