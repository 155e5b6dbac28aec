"""The URL table of the orders service."""

from __future__ import annotations

from aiohttp import web

from services.orders import handlers
from services.orders.stream import stream_orders


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/orders", handlers.place_order, name="place_order")
    app.router.add_get("/orders", handlers.list_orders, name="orders")
    # Before /orders/{order_id}, which would take "stream" for an id.
    app.router.add_get("/orders/stream", stream_orders, name="order_stream")
    app.router.add_get("/orders/{order_id}", handlers.get_order, name="order")
    app.router.add_post("/orders/{order_id}/cancel", handlers.cancel_order, name="cancel_order")
