"""HTTP handlers of the orders service: identity and input in, repository call, JSON out."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from common.errors import Problem, insufficient_scope
from common.identity import Identity, require_identity
from common.jsonresponse import json_response
from common.validation import invalid_request, read_json
from services.orders.app_keys import METRICS, OPENAPI, REPOSITORY
from services.orders.models import items_from_json, request_fingerprint
from services.orders.pagination import decode_cursor, encode_cursor
from services.orders.repository import IdempotencyConflictError

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_PAGE_SIZE = 20
MAX_OWNER_LENGTH = 255  # orders.user_id

_DIGITS = re.compile(r"^[0-9]{1,12}$")


def owner_of(identity: Identity) -> str:
    if len(identity.subject) > MAX_OWNER_LENGTH:
        raise Problem(403, "this identity cannot own orders", kind="forbidden")
    return identity.subject


def _not_found() -> Problem:
    # Also the answer for someone else's order: existence is not disclosed.
    return Problem(404, "no such order", kind="order-not-found")


def _path_order_id(request: web.Request) -> str:
    raw = request.match_info["order_id"]
    request.app[OPENAPI].check("Uuid", raw)
    return raw.lower()


def _idempotency_key(request: web.Request) -> str | None:
    values = request.headers.getall(IDEMPOTENCY_KEY_HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise invalid_request(
            [{"pointer": "", "detail": "send at most one Idempotency-Key header"}]
        )
    try:
        request.app[OPENAPI].check("IdempotencyKey", values[0])
    except Problem:
        raise invalid_request(
            [{"pointer": "", "detail": "Idempotency-Key must be 1-255 visible ASCII characters"}]
        ) from None
    return values[0]


def _list_query(request: web.Request) -> dict[str, Any]:
    """The query parameters as one object, validated against ListOrdersQuery."""
    query: dict[str, Any] = {}
    for name in request.query:
        values = request.query.getall(name)
        if len(values) > 1:
            raise invalid_request([{"pointer": f"/{name}", "detail": "given more than once"}])
        value = values[0]
        # Numbers arrive as text; convert plain digits so the schema can check the range.
        query[name] = int(value) if name == "limit" and _DIGITS.match(value) else value
    request.app[OPENAPI].check("ListOrdersQuery", query)
    return query


async def place_order(request: web.Request) -> web.Response:
    identity = require_identity(request, scope="orders:write")
    owner = owner_of(identity)
    key = _idempotency_key(request)
    body = await read_json(request, request.app[OPENAPI], "OrderCreate")
    items = items_from_json(body["items"])
    note = body.get("note")
    try:
        order, created = await request.app[REPOSITORY].create(
            owner,
            items,
            note,
            idempotency_key=key,
            fingerprint=request_fingerprint(items, note),
        )
    except IdempotencyConflictError:
        raise Problem(
            409,
            "this Idempotency-Key was already used with a different request body",
            kind="idempotency-key-reused",
        ) from None
    headers = {"Location": f"/orders/{order.id}"}
    if created:
        request.app[METRICS].placed.inc()
    else:
        headers[REPLAYED_HEADER] = "true"
    return json_response(order.to_json(), status=201, headers=headers)


async def list_orders(request: web.Request) -> web.Response:
    identity = require_identity(request, scope="orders:read")
    query = _list_query(request)
    owner = owner_of(identity)
    requested = query.get("user_id")
    if requested is not None and requested.lower() != owner.lower():
        if not identity.is_admin:
            raise insufficient_scope("admin")
        owner = requested.lower()
    after = None
    if "cursor" in query:
        try:
            after = decode_cursor(query["cursor"])
        except ValueError:
            raise invalid_request(
                [{"pointer": "/cursor", "detail": "not a valid cursor"}]
            ) from None
    orders, position = await request.app[REPOSITORY].list(
        owner, limit=query.get("limit", DEFAULT_PAGE_SIZE), after=after
    )
    return json_response(
        {
            "items": [order.to_json() for order in orders],
            "next_cursor": encode_cursor(position) if position is not None else None,
        }
    )


async def get_order(request: web.Request) -> web.Response:
    identity = require_identity(request, scope="orders:read")
    order_id = _path_order_id(request)
    owner = None if identity.is_admin else identity.subject
    order = await request.app[REPOSITORY].get(order_id, owner=owner)
    if order is None:
        raise _not_found()
    return json_response(order.to_json())


async def cancel_order(request: web.Request) -> web.Response:
    identity = require_identity(request, scope="orders:write")
    order_id = _path_order_id(request)
    owner = None if identity.is_admin else identity.subject
    result = await request.app[REPOSITORY].cancel(order_id, owner=owner)
    if result is None:
        raise _not_found()
    order, changed = result
    if changed:
        request.app[METRICS].cancelled.inc()
    return json_response(order.to_json())
