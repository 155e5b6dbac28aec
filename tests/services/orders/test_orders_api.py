"""The orders service over HTTP: the real app, identity headers as the gateway sets them."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.http import assert_problem

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ORDER = {
    "items": [
        {"sku": "BOOK-42", "quantity": 2, "unit_price_cents": 1250},
        {"sku": "pen", "quantity": 3, "unit_price_cents": 99},
    ],
    "note": "leave at the door",
}


def metric(client, name: str) -> float:
    return client.registry.get_sample_value(name) or 0.0


async def place(client, user_headers, body=ORDER, key: str | None = None):
    extra = {"Idempotency-Key": key} if key is not None else {}
    return await client.post("/orders", json=body, headers={**user_headers, **extra})


async def test_place_order(orders_client, headers) -> None:
    user_id = str(uuid.uuid4())
    response = await place(orders_client, headers.user(user_id))
    assert response.status == 201
    order = await response.json()
    assert response.headers["Location"] == f"/orders/{order['id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert uuid.UUID(order["id"])
    assert order["user_id"] == user_id
    assert order["items"] == ORDER["items"]
    assert order["total_cents"] == 2 * 1250 + 3 * 99
    assert order["status"] == "placed"
    assert order["note"] == "leave at the door"
    assert RFC3339_UTC.match(order["created_at"])
    assert "cancelled_at" not in order
    assert metric(orders_client, "orders_placed_total") == 1


async def test_order_without_note_has_no_note(orders_client, headers) -> None:
    response = await place(
        orders_client, headers.user(str(uuid.uuid4())), {"items": ORDER["items"]}
    )
    assert response.status == 201
    assert "note" not in await response.json()


async def test_extreme_but_valid_order(orders_client, headers) -> None:
    items = [
        {"sku": f"S{i}", "quantity": 1000, "unit_price_cents": 1_000_000_000} for i in range(100)
    ]
    response = await place(
        orders_client, headers.user(str(uuid.uuid4())), {"items": items, "note": "n" * 500}
    )
    assert response.status == 201
    assert (await response.json())["total_cents"] == 100 * 1000 * 1_000_000_000


async def test_another_users_order_is_404_and_an_admin_sees_it(orders_client, headers) -> None:
    owner, stranger = headers.user(str(uuid.uuid4())), headers.user(str(uuid.uuid4()))
    order = await (await place(orders_client, owner)).json()
    url = f"/orders/{order['id']}"
    assert (await orders_client.get(url, headers=owner)).status == 200
    await assert_problem(await orders_client.get(url, headers=stranger), 404)
    await assert_problem(await orders_client.post(url + "/cancel", headers=stranger), 404)
    assert (await (await orders_client.get(url, headers=owner)).json())["status"] == "placed"
    admin = await orders_client.get(url, headers=headers.admin(str(uuid.uuid4())))
    assert admin.status == 200
    assert await admin.json() == order


async def test_unknown_order_is_404_and_malformed_id_400(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    await assert_problem(await orders_client.get(f"/orders/{uuid.uuid4()}", headers=me), 404)
    await assert_problem(
        await orders_client.post(f"/orders/{uuid.uuid4()}/cancel", headers=me), 404
    )
    for bad in ("nope", "1", "x" * 400, "00000000-0000-0000-0000-00000000000z"):
        await assert_problem(await orders_client.get(f"/orders/{bad}", headers=me), 400)
        await assert_problem(await orders_client.post(f"/orders/{bad}/cancel", headers=me), 400)


async def test_cancel_is_idempotent(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    order = await (await place(orders_client, me)).json()
    first = await orders_client.post(f"/orders/{order['id']}/cancel", headers=me)
    assert first.status == 200
    cancelled = await first.json()
    assert cancelled["status"] == "cancelled" and RFC3339_UTC.match(cancelled["cancelled_at"])
    again = await orders_client.post(f"/orders/{order['id']}/cancel", headers=me)
    assert again.status == 200
    assert await again.json() == cancelled
    assert metric(orders_client, "orders_cancelled_total") == 1


async def test_an_admin_may_cancel_any_order(orders_client, headers) -> None:
    order = await (await place(orders_client, headers.user(str(uuid.uuid4())))).json()
    response = await orders_client.post(
        f"/orders/{order['id']}/cancel", headers=headers.admin(str(uuid.uuid4()))
    )
    assert response.status == 200 and (await response.json())["status"] == "cancelled"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/orders", "orders:write"),
        ("GET", "/orders", "orders:read"),
        # Any well-formed id: the identity and scope checks come before the lookup. Fixed,
        # so every collection of the tests (one per pytest-xdist worker) names them alike.
        ("GET", "/orders/00000000-0000-4000-8000-000000000001", "orders:read"),
        ("POST", "/orders/00000000-0000-4000-8000-000000000001/cancel", "orders:write"),
    ],
)
async def test_identity_and_scope_are_required(orders_client, headers, method, path, scope) -> None:
    anonymous = await orders_client.request(method, path, json=ORDER)
    await assert_problem(anonymous, 401)
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    others = frozenset({"users:read", "users:write", "orders:read", "orders:write"} - {scope})
    denied = await orders_client.request(
        method, path, json=ORDER, headers=headers.user(str(uuid.uuid4()), others)
    )
    assert (await assert_problem(denied, 403))["required_scope"] == scope


async def test_listing_pages_newest_first_without_duplicates_or_gaps(
    orders_client, headers
) -> None:
    me, other = headers.user(str(uuid.uuid4())), headers.user(str(uuid.uuid4()))
    placed = [(await (await place(orders_client, me)).json())["id"] for _ in range(23)]
    await place(orders_client, other)
    seen: list[str] = []
    cursor = None
    for _ in range(10):  # bounded: 23 orders at 5 a page is 5 pages
        query = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        response = await orders_client.get("/orders", params=query, headers=me)
        assert response.status == 200
        page = await response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= 5
        seen += [order["id"] for order in page["items"]]
        if len(seen) == 5:
            # An order placed mid-way is newer than every cursor: it shows on a first page,
            # never inside the walk already under way.
            await place(orders_client, me)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(placed))


async def test_default_page_size_is_20(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    for _ in range(21):
        await place(orders_client, me)
    page = await (await orders_client.get("/orders", headers=me)).json()
    assert len(page["items"]) == 20 and page["next_cursor"]
    empty = await (
        await orders_client.get("/orders", headers=headers.user(str(uuid.uuid4())))
    ).json()
    assert empty == {"items": [], "next_cursor": None}


async def test_admin_lists_another_users_orders(orders_client, headers) -> None:
    owner_id = str(uuid.uuid4())
    order = await (await place(orders_client, headers.user(owner_id))).json()
    admin = await orders_client.get(
        "/orders", params={"user_id": owner_id}, headers=headers.admin(str(uuid.uuid4()))
    )
    assert admin.status == 200
    assert [o["id"] for o in (await admin.json())["items"]] == [order["id"]]
    stranger = await orders_client.get(
        "/orders", params={"user_id": owner_id}, headers=headers.user(str(uuid.uuid4()))
    )
    assert (await assert_problem(stranger, 403))["required_scope"] == "admin"
    # Naming oneself is allowed for anyone.
    own = await orders_client.get(
        "/orders", params={"user_id": owner_id}, headers=headers.user(owner_id)
    )
    assert own.status == 200


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=1.5",
        "limit=abc",
        "limit=",
        "limit=99999999999999999999999",
        "limit=1&limit=2",
        "cursor=%%%",
        "cursor=" + "A" * 201,
        "cursor=bm90LWEtY3Vyc29y",  # base64 of "not-a-cursor"
        "user_id=not-a-uuid",
        "page=2",
        "offset=10",
    ],
)
async def test_bad_list_parameters_are_400(orders_client, headers, query) -> None:
    response = await orders_client.get(f"/orders?{query}", headers=headers.admin(str(uuid.uuid4())))
    await assert_problem(response, 400)


async def test_idempotent_repeat_returns_the_first_order(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    first = await place(orders_client, me, key="order-7f3a")
    assert first.status == 201
    order = await first.json()
    again = await place(orders_client, me, key="order-7f3a")
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert await again.json() == order
    # Key order and number spelling do not matter: the comparison is on canonical JSON.
    reordered = {
        "note": ORDER["note"],
        "items": [dict(reversed(list(i.items()))) for i in ORDER["items"]],
    }
    reordered["items"][0]["quantity"] = 2.0
    assert (await (await place(orders_client, me, reordered, key="order-7f3a")).json())[
        "id"
    ] == order["id"]
    assert metric(orders_client, "orders_placed_total") == 1
    listing = await (await orders_client.get("/orders", headers=me)).json()
    assert [o["id"] for o in listing["items"]] == [order["id"]]


async def test_same_key_with_another_body_is_409(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    assert (await place(orders_client, me, key="k1")).status == 201
    other = {**ORDER, "note": "ring twice"}
    body = await assert_problem(await place(orders_client, me, other, key="k1"), 409)
    assert body["type"] == "urn:passgate:problem:idempotency-key-reused"
    assert metric(orders_client, "orders_placed_total") == 1


async def test_keys_are_per_user(orders_client, headers) -> None:
    a = await (await place(orders_client, headers.user(str(uuid.uuid4())), key="shared")).json()
    b = await (await place(orders_client, headers.user(str(uuid.uuid4())), key="shared")).json()
    assert a["id"] != b["id"]


async def test_replay_after_cancel_shows_the_order_as_it_is(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    order = await (await place(orders_client, me, key="k-cancel")).json()
    await orders_client.post(f"/orders/{order['id']}/cancel", headers=me)
    replay = await place(orders_client, me, key="k-cancel")
    assert replay.status == 201 and (await replay.json())["status"] == "cancelled"


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "ключ", "tab\there"])
async def test_bad_idempotency_keys_are_400(orders_client, headers, key) -> None:
    response = await orders_client.post(
        "/orders",
        data=json.dumps(ORDER).encode(),
        headers={
            **headers.user(str(uuid.uuid4())),
            "Content-Type": "application/json",
            "Idempotency-Key": key.encode().decode("latin-1"),
        },
    )
    await assert_problem(response, 400)
    assert metric(orders_client, "orders_placed_total") == 0


def item(**changes):
    return {"sku": "SKU-1", "quantity": 1, "unit_price_cents": 100, **changes}


BAD_BODIES = {
    "malformed-json": b'{"items": [',
    "trailing-garbage": b'{"items": []} x',
    "not-an-object": b"[1, 2]",
    "json-string": b'"items"',
    "empty-body": b"",
    "missing-items": b"{}",
    "items-not-array": json.dumps({"items": "SKU-1"}).encode(),
    "items-null": json.dumps({"items": None}).encode(),
    "no-items": json.dumps({"items": []}).encode(),
    "too-many-items": json.dumps({"items": [item()] * 101}).encode(),
    "unknown-field": json.dumps({"items": [item()], "coupon": "FREE"}).encode(),
    "client-total": json.dumps({"items": [item()], "total_cents": 1}).encode(),
    "unknown-item-field": json.dumps({"items": [item(discount=5)]}).encode(),
    "quantity-string": json.dumps({"items": [item(quantity="1")]}).encode(),
    "quantity-bool": json.dumps({"items": [item(quantity=True)]}).encode(),
    "quantity-fraction": json.dumps({"items": [item(quantity=1.5)]}).encode(),
    "quantity-zero": json.dumps({"items": [item(quantity=0)]}).encode(),
    "quantity-1001": json.dumps({"items": [item(quantity=1001)]}).encode(),
    "quantity-huge": json.dumps({"items": [item(quantity=10**30)]}).encode(),
    "quantity-negative-huge": json.dumps({"items": [item(quantity=-(10**30))]}).encode(),
    "quantity-overflow-float": b'{"items": [{"sku":"a", "quantity":1e400, "unit_price_cents": 0}]}',
    "quantity-thousands-of-digits": b'{"items": [{"sku": "a", "quantity": '
    + b"9" * 5000
    + b', "unit_price_cents": 1}]}',
    "quantity-nan": b'{"items": [{"sku": "a", "quantity": NaN, "unit_price_cents": 1}]}',
    "quantity-infinity": b'{"items": [{"sku": "a", "quantity": Infinity, "unit_price_cents": 1}]}',
    "price-negative": json.dumps({"items": [item(unit_price_cents=-1)]}).encode(),
    "price-too-big": json.dumps({"items": [item(unit_price_cents=1_000_000_001)]}).encode(),
    "price-huge": json.dumps({"items": [item(unit_price_cents=2**63)]}).encode(),
    "price-null": json.dumps({"items": [item(unit_price_cents=None)]}).encode(),
    "sku-number": json.dumps({"items": [item(sku=12)]}).encode(),
    "sku-empty": json.dumps({"items": [item(sku="")]}).encode(),
    "sku-too-long": json.dumps({"items": [item(sku="s" * 65)]}).encode(),
    "sku-nul": json.dumps({"items": [item(sku="a\u0000b")]}).encode(),
    "sku-bell": json.dumps({"items": [item(sku="a\u0007b")]}).encode(),
    "sku-newline": json.dumps({"items": [item(sku="a\nb")]}).encode(),
    "sku-escape": json.dumps({"items": [item(sku="\u001b[2J")]}).encode(),
    "sku-del": json.dumps({"items": [item(sku="a\u007fb")]}).encode(),
    "sku-c1": json.dumps({"items": [item(sku="a\u0085b")]}).encode(),
    "sku-line-separator": json.dumps({"items": [item(sku="a\u2028b")]}).encode(),
    "sku-lone-surrogate": b'{"items": [{"sku": "\\udc00", "quantity": 1, "unit_price_cents": 1}]}',
    "note-too-long": json.dumps({"items": [item()], "note": "n" * 501}).encode(),
    "note-control": json.dumps({"items": [item()], "note": "a\u0001b"}).encode(),
    "note-number": json.dumps({"items": [item()], "note": 5}).encode(),
    "item-not-object": json.dumps({"items": ["SKU-1"]}).encode(),
    "deep-nesting": b'{"items": ' + b"[" * 20000 + b"]" * 20000 + b"}",
    "not-utf8": b'{"items": [{"sku": "\xff", "quantity": 1, "unit_price_cents": 1}]}',
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_invalid_bodies_are_400(orders_client, headers, body) -> None:
    response = await orders_client.post(
        "/orders",
        data=body,
        headers={**headers.user(str(uuid.uuid4())), "Content-Type": "application/json"},
    )
    problem = await assert_problem(response, 400)
    assert len(problem.get("detail", "")) < 3000
    assert metric(orders_client, "orders_placed_total") == 0


async def test_wrong_media_type_is_415_and_huge_body_413(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    text = await orders_client.post(
        "/orders",
        data="items=1",
        headers={**me, "Content-Type": "application/x-www-form-urlencoded"},
    )
    await assert_problem(text, 415)
    huge = json.dumps({"items": [item()], "note": "n" * 100_000}).encode()
    big = await orders_client.post(
        "/orders", data=huge, headers={**me, "Content-Type": "application/json"}
    )
    await assert_problem(big, 413)


async def test_metrics_are_exposed(orders_client, headers) -> None:
    me = headers.user(str(uuid.uuid4()))
    order = await (await place(orders_client, me)).json()
    await orders_client.post(f"/orders/{order['id']}/cancel", headers=me)
    text = await (await orders_client.get("/metrics")).text()
    assert "orders_placed_total 1.0" in text
    assert "orders_cancelled_total 1.0" in text
    assert 'route="/orders/{order_id}/cancel"' in text
