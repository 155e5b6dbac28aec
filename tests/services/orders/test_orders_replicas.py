"""Two replicas of the orders service on one database: idempotency holds across them."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import CollectorRegistry

from services.orders.app import create_app

ORDER = {"items": [{"sku": "BOOK-42", "quantity": 1, "unit_price_cents": 1250}]}


async def test_concurrent_repeats_on_two_replicas_create_one_order(
    aiohttp_client, database_url, make_orders_settings, headers
) -> None:
    registries = [CollectorRegistry(), CollectorRegistry()]
    replicas = [
        await aiohttp_client(create_app(make_orders_settings(database_url), registry=registry))
        for registry in registries
    ]
    me = {**headers.user(str(uuid.uuid4())), "Idempotency-Key": f"burst-{uuid.uuid4()}"}
    responses = await asyncio.gather(
        *(replicas[i % 2].post("/orders", json=ORDER, headers=me) for i in range(20))
    )
    assert [r.status for r in responses] == [201] * 20
    bodies = [await r.json() for r in responses]
    assert len({body["id"] for body in bodies}) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count(None) == 1 and replayed.count("true") == 19
    placed = sum(r.get_sample_value("orders_placed_total") for r in registries)
    assert placed == 1
    for replica in replicas:
        listing = await (await replica.get("/orders", headers=me)).json()
        assert [o["id"] for o in listing["items"]] == [bodies[0]["id"]]
    # The same key with another body is refused on either replica.
    conflict = await replicas[1].post("/orders", json={**ORDER, "note": "x"}, headers=me)
    assert conflict.status == 409


async def test_any_replica_serves_any_order(
    aiohttp_client, database_url, make_orders_settings, headers
) -> None:
    first, second = [
        await aiohttp_client(
            create_app(make_orders_settings(database_url), registry=CollectorRegistry())
        )
        for _ in range(2)
    ]
    me = headers.user(str(uuid.uuid4()))
    order = await (await first.post("/orders", json=ORDER, headers=me)).json()
    assert (await second.get(f"/orders/{order['id']}", headers=me)).status == 200
    cancelled = await second.post(f"/orders/{order['id']}/cancel", headers=me)
    assert (await cancelled.json())["status"] == "cancelled"
    assert (await (await first.get(f"/orders/{order['id']}", headers=me)).json())[
        "status"
    ] == "cancelled"
