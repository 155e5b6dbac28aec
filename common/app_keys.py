"""Typed application and request keys used by the shared code, importable from one place.

The keys whose value is a common/ type are declared beside that type and re-exported
here; this module imports those modules and none of them imports it, so there is no
import circle.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.context import REQUEST_ID
from common.health import READINESS
from common.identity import ASSERTION_VERIFIER, IDENTITY
from common.metrics import HTTP_METRICS
from common.tracing import TRACE

SERVICE_NAME = web.AppKey("service_name", str)
REGISTRY = web.AppKey("registry", CollectorRegistry)

__all__ = [
    "ASSERTION_VERIFIER",
    "HTTP_METRICS",
    "IDENTITY",
    "READINESS",
    "REGISTRY",
    "REQUEST_ID",
    "SERVICE_NAME",
    "TRACE",
]
