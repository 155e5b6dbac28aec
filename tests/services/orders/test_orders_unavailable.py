"""A lost database is a 503 problem and an unready service, and the service recovers alone."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest

from devstack.processes import free_port
from services.orders.app import create_app
from tests.support.tcp_proxy import TcpProxy

ORDER = {"items": [{"sku": "BOOK-42", "quantity": 1, "unit_price_cents": 1250}]}


async def assert_unavailable(client, user_headers) -> None:
    response = await client.get("/orders", headers=user_headers)
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"]
    assert (await response.json(content_type=None))["type"].endswith("database-unavailable")
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json(content_type=None))["checks"]["database"] != "ok"
    assert (await client.get("/healthz")).status == 200


async def test_unreachable_database_is_503_and_unready(
    aiohttp_client, make_orders_settings, headers
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/passgate"
    client = await aiohttp_client(create_app(make_orders_settings(url, migrate_on_start=False)))
    me = headers.user(str(uuid.uuid4()))
    await assert_unavailable(client, me)
    placed = await client.post("/orders", json=ORDER, headers=me)
    assert placed.status == 503


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # needs a server to cut
async def test_recovers_when_the_database_returns(
    aiohttp_client, database_url, make_orders_settings, headers
) -> None:
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432, free_port())
    await proxy.start()
    try:
        proxied = database_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
        client = await aiohttp_client(create_app(make_orders_settings(proxied)))
        me = headers.user(str(uuid.uuid4()))
        order = await (await client.post("/orders", json=ORDER, headers=me)).json()

        await proxy.cut()
        await assert_unavailable(client, me)

        await proxy.restore()  # the same port: the service's URL has not changed
        assert (await client.get("/readyz")).status == 200
        listing = await client.get("/orders", headers=me)
        assert listing.status == 200
        assert [o["id"] for o in (await listing.json())["items"]] == [order["id"]]
    finally:
        await proxy.close()
