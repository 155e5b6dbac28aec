"""The order stream through the four real processes: a WebSocket from the gateway's public
port to the orders service, its handshake checked once, its socket closed with its token.

The gateway and orders run as the processes `make run` starts (tests/e2e/conftest.py);
the socket's client is aiohttp's, as a non-browser caller or speaking the browser's
subprotocol convention. What Chromium does with it is tests/browser's part.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType

from devstack.stack import Stack
from tests.support.http import bearer, register_and_login

ORDER = {"items": [{"sku": "book-1", "quantity": 1, "unit_price_cents": 1250}]}


async def _account(session: aiohttp.ClientSession, stack: Stack) -> tuple[str, str]:
    user_id, tokens = await register_and_login(session, stack.gateway_url)
    return user_id, tokens["access_token"]


async def _ready(socket: aiohttp.ClientWebSocketResponse) -> None:
    assert (await asyncio.wait_for(socket.receive_json(), 15))["type"] == "ready"


async def _place(session: aiohttp.ClientSession, stack: Stack, token: str) -> dict:
    async with session.post(f"{stack.gateway_url}/orders", json=ORDER, headers=bearer(token)) as response:
        assert response.status == 201
        return await response.json()


def _resigned(token: str, signing_key, **claims) -> str:
    """The token with some claims changed, signed again with auth's current key."""
    key, kid = signing_key
    payload = {**jwt.decode(token, options={"verify_signature": False}), **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


async def test_a_browser_style_socket_sees_its_own_new_orders_only(stack: Stack) -> None:
    origin = stack.allowed_origins[0]
    async with aiohttp.ClientSession() as session:
        _, token = await _account(session, stack)
        _, other = await _account(session, stack)
        async with session.ws_connect(
            f"{stack.gateway_url}/orders/stream", protocols=("passgate.v1", f"bearer.{token}"),
            origin=origin,
        ) as socket:
            assert socket.protocol == "passgate.v1"
            await _ready(socket)
            await _place(session, stack, other)
            mine = await _place(session, stack, token)
            message = await asyncio.wait_for(socket.receive_json(), 15)
            assert (message["type"], message["order"]) == ("order", mine)


async def test_spoofed_identity_headers_on_the_handshake_are_stripped(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        _, token = await _account(session, stack)
        victim_id, victim = await _account(session, stack)
        spoofed = {**bearer(token), "X-User-Id": victim_id, "X-User-Assertion": "forged"}
        async with session.ws_connect(f"{stack.gateway_url}/orders/stream", headers=spoofed) as socket:
            await _ready(socket)
            await _place(session, stack, victim)
            mine = await _place(session, stack, token)
            message = await asyncio.wait_for(socket.receive_json(), 15)
            assert message["order"]["id"] == mine["id"]  # never the victim's


async def test_handshakes_are_refused_before_any_upgrade(stack: Stack, signing_key) -> None:
    url = f"{stack.gateway_url}/orders/stream"
    async with aiohttp.ClientSession() as session:
        _, token = await _account(session, stack)
        expired = _resigned(token, signing_key, iat=int(time.time()) - 400, exp=int(time.time()) - 120)
        refusals = {
            401: [{}, bearer("not.a.token"), bearer(expired)],
            403: [{**bearer(token), "Origin": "http://127.0.0.1:1"}],
            400: [{**bearer(token), "Sec-WebSocket-Version": "12"}],
        }
        for status, attempts in refusals.items():
            for headers in attempts:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(url, headers=headers)
                assert refused.value.status == status, headers
        # The token never travels in the query string: one there is not looked at.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{url}?access_token={token}")
        assert refused.value.status == 401


async def test_the_socket_closes_with_4001_once_its_token_expires(stack: Stack, signing_key) -> None:
    """A token past its exp but inside the gateway's 30 s leeway is accepted at the
    handshake; the socket is closed when the leeway runs out, seconds later."""
    async with aiohttp.ClientSession() as session:
        _, token = await _account(session, stack)
        now = int(time.time())
        ending = _resigned(token, signing_key, iat=now - 300, exp=now - 27)
        async with session.ws_connect(f"{stack.gateway_url}/orders/stream", headers=bearer(ending)) as socket:
            await _ready(socket)
            closing = await asyncio.wait_for(socket.receive(), 30)
            assert (closing.type, closing.data, closing.extra) == (WSMsgType.CLOSE, 4001, "token expired")


async def test_an_oversized_message_closes_the_socket_with_1009(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        _, token = await _account(session, stack)
        async with session.ws_connect(f"{stack.gateway_url}/orders/stream", headers=bearer(token)) as socket:
            await _ready(socket)
            await socket.send_bytes(b"x" * (64 * 1024 + 1))  # the route's max_body_bytes
            closing = await asyncio.wait_for(socket.receive(), 15)
            assert (closing.type, closing.data) == (WSMsgType.CLOSE, 1009)
