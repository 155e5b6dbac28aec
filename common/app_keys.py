"""Typed application and request keys used by the shared code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from common.health import Readiness
    from common.identity import Identity
    from common.metrics import HttpMetrics
    from common.tracing import TraceContext

SERVICE_NAME = web.AppKey("service_name", str)
REGISTRY = web.AppKey("registry", CollectorRegistry)
HTTP_METRICS = web.AppKey("http_metrics", "HttpMetrics")
READINESS = web.AppKey("readiness", "Readiness")

REQUEST_ID = web.RequestKey("request_id", str)
TRACE = web.RequestKey("trace", "TraceContext")
IDENTITY = web.RequestKey("identity", "Identity")
