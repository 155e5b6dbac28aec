"""Typed application keys of the orders service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from common.validation import OpenApiDocument

if TYPE_CHECKING:
    from services.orders.metrics import OrdersMetrics
    from services.orders.repository import OrderRepository

OPENAPI = web.AppKey("orders_openapi", OpenApiDocument)
REPOSITORY = web.AppKey("orders_repository", "OrderRepository")
METRICS = web.AppKey("orders_metrics", "OrdersMetrics")
