"""A slow WebSocket reader does not make a real gateway process hold what a fast sender
sends: the gateway reads the sender only as fast as the reader drains.

One more gateway process of the e2e system relays its orders routes to a flood server in
this test process; the client, also here, reads nothing for a while. The gateway's
resident memory is read from /proc as an operator would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from bench.procstat import rss_bytes
from devstack.stack import Stack
from tests.support.http import bearer, register_and_login

COUNT, SIZE = 2000, 64 * 1024  # 125 MiB offered
MiB = 1024 * 1024
SENT = web.AppKey("sent", list)


async def _flood(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(compress=False)
    await socket.prepare(request)
    payload = b"f" * SIZE
    for _ in range(COUNT):
        await socket.send_bytes(payload)  # waits while the gateway does not read
        request.app[SENT].append(1)
    await socket.receive()  # until the client closes
    return socket


async def _ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
def flood_app() -> web.Application:
    app = web.Application()
    app[SENT] = []
    app.router.add_get("/orders/stream", _flood)
    app.router.add_get("/readyz", _ready)
    return app


@pytest.fixture
def flood_gateway(stack: Stack) -> Iterator[str]:
    """The name of the extra gateway process; it must stop cleanly after the test."""
    yield "gateway-flood"
    if "gateway-flood" in stack.processes:
        assert stack.remove("gateway-flood") == 0


async def test_a_slow_reader_does_not_grow_the_gateways_memory(
    stack: Stack, aiohttp_server, flood_app, flood_gateway
) -> None:
    server = await aiohttp_server(flood_app)
    upstream = str(server.make_url("")).rstrip("/")
    process = stack.spawn("gateway", flood_gateway, env={"PASSGATE_UPSTREAM_ORDERS": upstream})
    assert process.pid is not None
    sent = flood_app[SENT]
    async with aiohttp.ClientSession() as session:
        _, tokens = await register_and_login(session, stack.gateway_url)
        baseline = rss_bytes(process.pid)
        url = f"{stack.process_url(flood_gateway)}/orders/stream"
        async with session.ws_connect(url, headers=bearer(tokens["access_token"]), max_msg_size=0) as socket:
            stalled = -1
            while len(sent) != stalled:  # until the sender stops making progress
                stalled = len(sent)
                await asyncio.sleep(1.0)
            grown = rss_bytes(process.pid) - baseline
            assert stalled * SIZE < 32 * MiB, f"{stalled} messages left the sender"
            assert grown < 32 * MiB, f"the gateway grew by {grown / MiB:.1f} MiB"
            for _ in range(COUNT):  # then everything arrives, whole and in order
                message = await asyncio.wait_for(socket.receive(), 30)
                assert message.type is WSMsgType.BINARY and len(message.data) == SIZE
    assert len(sent) == COUNT
