"""Typed application keys of the orders service."""

from __future__ import annotations

from aiohttp import web

from common.validation import OpenApiDocument
from services.orders.metrics import OrdersMetrics
from services.orders.repository import OrderRepository

OPENAPI = web.AppKey("orders_openapi", OpenApiDocument)
REPOSITORY = web.AppKey("orders_repository", OrderRepository)
METRICS = web.AppKey("orders_metrics", OrdersMetrics)
