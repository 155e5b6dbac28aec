"""The seed's five steps through four real processes: register, log in, carry the token, verify once."""

from __future__ import annotations

import base64
import json

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import Stack
from tests.support.http import assert_problem, bearer, register_and_login


async def test_the_whole_flow(stack: Stack) -> None:
    """register, login, GET /users/me, POST /orders, GET /orders, GET /orders/{id}, cancel."""
    gw = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        user_id, tokens = await register_and_login(session, gw)
        auth = bearer(tokens["access_token"])

        async with session.get(f"{gw}/users/me", headers=auth) as response:
            assert response.status == 200
            profile = await response.json()
        assert profile["id"] == user_id and profile["display_name"] == "End To End"
        assert set(profile) >= {"id", "username", "display_name", "created_at"}

        order_body = {"items": [{"sku": "book-1", "quantity": 2, "unit_price_cents": 1250}]}
        async with session.post(f"{gw}/orders", json=order_body, headers=auth) as response:
            assert response.status == 201, await response.text()
            order = await response.json()
            assert response.headers["Location"] == f"/orders/{order['id']}"
        assert order["total_cents"] == 2500 and order["status"] == "placed"
        assert order["user_id"] == user_id

        async with session.get(f"{gw}/orders", headers=auth) as response:
            listing = await response.json()
        assert [item["id"] for item in listing["items"]] == [order["id"]]
        assert "next_cursor" in listing

        async with session.get(f"{gw}/orders/{order['id']}", headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["id"] == order["id"]

        for _ in range(2):  # cancelling twice is still 200
            async with session.post(f"{gw}/orders/{order['id']}/cancel", headers=auth) as response:
                assert response.status == 200
                assert (await response.json())["status"] == "cancelled"


async def test_no_token_is_401_with_bearer_challenge(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.gateway_url}/orders") as response:
            await assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "invalid_token" not in response.headers["WWW-Authenticate"]


def _forge(claims: dict, key: rsa.RSAPrivateKey, kid: str) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


async def _claims_of(session: aiohttp.ClientSession, gateway: str) -> tuple[dict, dict]:
    _, tokens = await register_and_login(session, gateway)
    token = tokens["access_token"]
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


async def test_token_signed_by_an_unpublished_key_is_401(stack: Stack) -> None:
    """Same kid, same claims, a key auth never published: the signature check refuses it."""
    async with aiohttp.ClientSession() as session:
        header, claims = await _claims_of(session, stack.gateway_url)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = _forge(claims, stranger, header["kid"])
        async with session.get(f"{stack.gateway_url}/orders", headers=bearer(forged)) as response:
            await assert_problem(response, 401)
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_alg_none_is_401(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        header, claims = await _claims_of(session, stack.gateway_url)
        for alg in ("none", "None", "NONE"):
            unsigned = f"{_b64({'alg': alg, 'typ': 'at+jwt', 'kid': header['kid']})}.{_b64(claims)}."
            async with session.get(f"{stack.gateway_url}/orders", headers=bearer(unsigned)) as response:
                await assert_problem(response, 401)


async def test_expired_token_is_401(stack: Stack, signing_key) -> None:
    """A token auth's own key signed, but whose exp has passed (beyond any leeway)."""
    key, kid = signing_key
    async with aiohttp.ClientSession() as session:
        _, claims = await _claims_of(session, stack.gateway_url)
        expired = dict(claims, iat=claims["iat"] - 3600, nbf=claims["iat"] - 3600, exp=claims["iat"] - 3000)
        async with session.get(
            f"{stack.gateway_url}/orders", headers=bearer(_forge(expired, key, kid))
        ) as response:
            await assert_problem(response, 401)
        # The same claims unexpired, signed the same way, pass: the test key is the real one.
        async with session.get(
            f"{stack.gateway_url}/orders", headers=bearer(_forge(claims, key, kid))
        ) as response:
            assert response.status == 200


async def test_another_users_order_is_404(stack: Stack) -> None:
    gw = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        _, alice = await register_and_login(session, gw)
        _, mallory = await register_and_login(session, gw)
        body = {"items": [{"sku": "a", "quantity": 1, "unit_price_cents": 100}]}
        async with session.post(f"{gw}/orders", json=body, headers=bearer(alice["access_token"])) as r:
            order_id = (await r.json())["id"]
        for method, path in (("GET", f"/orders/{order_id}"), ("POST", f"/orders/{order_id}/cancel")):
            async with session.request(method, gw + path, headers=bearer(mallory["access_token"])) as r:
                await assert_problem(r, 404)
        async with session.get(f"{gw}/orders/{order_id}", headers=bearer(alice["access_token"])) as r:
            assert (await r.json())["status"] == "placed"


async def test_client_sent_identity_headers_cannot_impersonate(stack: Stack) -> None:
    """X-User-* sent by the client is stripped: the request acts as the token's subject only."""
    gw = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        alice_id, alice = await register_and_login(session, gw)
        mallory_id, mallory = await register_and_login(session, gw)
        body = {"items": [{"sku": "a", "quantity": 1, "unit_price_cents": 100}]}
        async with session.post(f"{gw}/orders", json=body, headers=bearer(alice["access_token"])) as r:
            order_id = (await r.json())["id"]
        spoofed = {
            "X-User-Id": alice_id,
            "x-user-scopes": "admin orders:read users:read",
            "X_User_Id": alice_id,
        }
        async with session.get(f"{gw}/users/me", headers=bearer(mallory["access_token"]) | spoofed) as r:
            assert (await r.json())["id"] == mallory_id
        async with session.get(f"{gw}/orders/{order_id}", headers=bearer(mallory["access_token"]) | spoofed) as r:
            await assert_problem(r, 404)
        async with session.get(f"{gw}/users/{alice_id}", headers=bearer(mallory["access_token"]) | spoofed) as r:
            await assert_problem(r, 403)
        async with session.get(f"{gw}/orders", headers=spoofed) as r:  # no token at all
            await assert_problem(r, 401)


@pytest.mark.parametrize("path", ["/orders", "/users/me", "/auth/login"])
async def test_cors_preflight_from_allowed_origin_needs_no_token(stack: Stack, path: str) -> None:
    origin = stack.allowed_origins[0]
    async with aiohttp.ClientSession() as session:
        async with session.options(
            stack.gateway_url + path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST" if path != "/users/me" else "GET",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        ) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == origin


async def test_cors_refuses_unlisted_origin_and_labels_errors(stack: Stack) -> None:
    allowed, refused = stack.allowed_origins[1], stack.frontend_origins[2]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.gateway_url}/orders", headers={"Origin": refused}) as response:
            assert response.status == 401
            assert "Access-Control-Allow-Origin" not in response.headers
        async with session.get(f"{stack.gateway_url}/orders", headers={"Origin": allowed}) as response:
            await assert_problem(response, 401)
            assert response.headers["Access-Control-Allow-Origin"] == allowed
            assert "Origin" in ", ".join(response.headers.getall("Vary", []))
