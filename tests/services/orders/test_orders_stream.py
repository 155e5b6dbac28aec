"""GET /orders/stream: the caller's order changes over a WebSocket, from any replica.

Two replicas of the real orders app on one database (SQLite and PostgreSQL): a stream
held by one sees the orders placed and cancelled through the other, and only the
caller's own.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from devstack.processes import free_port
from services.orders.app import create_app

ORDER = {"items": [{"sku": "BOOK-42", "quantity": 1, "unit_price_cents": 1250}]}


@pytest.fixture
async def replicas(aiohttp_client, database_url, make_orders_settings):
    return [
        await aiohttp_client(create_app(make_orders_settings(database_url), registry=CollectorRegistry()))
        for _ in range(2)
    ]


async def _ready(stream: aiohttp.ClientWebSocketResponse) -> str:
    """The stream's first message; its cursor."""
    message = await asyncio.wait_for(stream.receive_json(), 15)
    assert message["type"] == "ready" and set(message) == {"type", "cursor"}
    return message["cursor"]


async def _next_order(stream: aiohttp.ClientWebSocketResponse) -> dict:
    message = await asyncio.wait_for(stream.receive_json(), 15)
    assert message["type"] == "order" and message["cursor"]
    return message["order"]


async def test_a_stream_on_one_replica_sees_changes_made_through_another(replicas, headers) -> None:
    first, second = replicas
    me, someone = headers.user(str(uuid.uuid4())), headers.user(str(uuid.uuid4()))
    stream = await second.ws_connect("/orders/stream", headers=me)
    await _ready(stream)
    await first.post("/orders", json={**ORDER, "note": "not mine"}, headers=someone)
    placed = await (await first.post("/orders", json=ORDER, headers=me)).json()
    seen = await _next_order(stream)
    assert seen == placed  # the order as GET /orders/{id} answers it; not someone's
    await first.post(f"/orders/{placed['id']}/cancel", headers=me)
    cancelled = await _next_order(stream)
    assert (cancelled["id"], cancelled["status"]) == (placed["id"], "cancelled")
    second_order = await (await second.post("/orders", json=ORDER, headers=me)).json()
    assert (await _next_order(stream))["id"] == second_order["id"]  # once, despite the look-back
    await stream.close()


async def test_orders_placed_before_the_stream_opened_are_not_replayed(replicas, headers) -> None:
    first, second = replicas
    me = headers.user(str(uuid.uuid4()))
    await first.post("/orders", json=ORDER, headers=me)
    stream = await second.ws_connect("/orders/stream", headers=me)
    await _ready(stream)
    placed = await (await first.post("/orders", json=ORDER, headers=me)).json()
    assert (await _next_order(stream))["id"] == placed["id"]
    await stream.close()


async def test_a_reconnecting_client_resumes_from_its_cursor(replicas, headers) -> None:
    first, second = replicas
    me = headers.user(str(uuid.uuid4()))
    stream = await second.ws_connect("/orders/stream", headers=me)
    cursor = await _ready(stream)
    await stream.close()
    missed = await (await first.post("/orders", json=ORDER, headers=me)).json()
    resumed = await first.ws_connect("/orders/stream", params={"since": cursor}, headers=me)
    await _ready(resumed)
    assert (await _next_order(resumed))["id"] == missed["id"]
    await resumed.close()


@pytest.mark.parametrize("since", ["", "yesterday", "2026-01-01T00:00:00", ["2026-01-01T00:00:00Z"] * 2])
async def test_a_cursor_that_is_not_one_is_400_before_the_upgrade(replicas, headers, since) -> None:
    params = [("since", value) for value in (since if isinstance(since, list) else [since])]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await replicas[0].ws_connect("/orders/stream", params=params, headers=headers.user(str(uuid.uuid4())))
    assert refused.value.status == 400


async def test_the_stream_needs_an_identity_with_orders_read(replicas, headers) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await replicas[0].ws_connect("/orders/stream")
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await replicas[0].ws_connect(
            "/orders/stream", headers=headers.user(str(uuid.uuid4()), frozenset({"users:read"}))
        )
    assert refused.value.status == 403


async def test_a_plain_get_of_the_stream_is_426(replicas, headers) -> None:
    response = await replicas[0].get("/orders/stream", headers=headers.user(str(uuid.uuid4())))
    assert response.status == 426
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Upgrade"] == "websocket"


async def test_a_database_it_cannot_reach_ends_the_stream_with_1011(
    aiohttp_client, make_orders_settings, headers
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/passgate"
    client = await aiohttp_client(
        create_app(make_orders_settings(url, migrate_on_start=False), registry=CollectorRegistry())
    )
    stream = await client.ws_connect("/orders/stream", headers=headers.user(str(uuid.uuid4())))
    await _ready(stream)
    closing = await asyncio.wait_for(stream.receive(), 30)
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1011)
