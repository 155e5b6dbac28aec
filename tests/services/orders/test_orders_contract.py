"""The published OpenAPI document is sound, and real answers match its schemas."""

from __future__ import annotations

import uuid

from common.validation import OpenApiDocument
from services.orders.app import OPENAPI_PATH
from tests.support.openapi import load_sound_document

ORDER = {"items": [{"sku": "BOOK-42", "quantity": 2, "unit_price_cents": 1250}], "note": "hi"}


def test_every_component_schema_is_valid_json_schema() -> None:
    load_sound_document(OPENAPI_PATH)


def _objects(schema, path=""):
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            yield path, schema
        for key, value in schema.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _objects(value, f"{path}/{index}")


def test_request_and_resource_objects_are_closed() -> None:
    document = OpenApiDocument.load(OPENAPI_PATH)
    schemas = document.document["components"]["schemas"]
    for name in ("OrderCreate", "OrderItem", "Order", "OrderPage", "ListOrdersQuery"):
        for path, schema in _objects(schemas[name], name):
            assert schema.get("additionalProperties") is False, path


async def test_answers_match_the_published_schemas(orders_client, headers) -> None:
    document = OpenApiDocument.load(OPENAPI_PATH)
    me = headers.user(str(uuid.uuid4()))
    order = await (await orders_client.post("/orders", json=ORDER, headers=me)).json()
    document.check("Order", order)
    await orders_client.post("/orders", json={"items": ORDER["items"]}, headers=me)
    page = await (await orders_client.get("/orders?limit=1", headers=me)).json()
    document.check("OrderPage", page)
    assert page["next_cursor"] is not None
    cancelled = await orders_client.post(f"/orders/{order['id']}/cancel", headers=me)
    document.check("Order", await cancelled.json())
