"""Typed application and request keys of the gateway, declared in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp

    from gateway.cors import CorsPolicy
    from gateway.issuers import Issuers
    from gateway.reload import RouteReloader
    from gateway.routing import Routing
    from gateway.jwks import JwksClient
    from gateway.metrics import GatewayMetrics
    from gateway.proxy import Proxy
    from gateway.ratelimit import RateLimiter
    from gateway.settings import GatewaySettings
    from gateway.verification import TokenVerifier

SETTINGS = web.AppKey("gateway_settings", "GatewaySettings")
METRICS = web.AppKey("gateway_metrics", "GatewayMetrics")
JWKS = web.AppKey("jwks", "JwksClient")
VERIFIER = web.AppKey("token_verifier", "TokenVerifier")
PROXY = web.AppKey("proxy", "Proxy")
RATE_LIMITER = web.AppKey("rate_limiter", "RateLimiter")
CORS_POLICY = web.AppKey("cors_policy", "CorsPolicy")
HEALTH_SESSION = web.AppKey("health_session", "aiohttp.ClientSession")
ROUTING = web.AppKey("routing", "Routing")
ISSUERS = web.AppKey("issuers", "Issuers")
RELOADER = web.AppKey("route_reloader", "RouteReloader")
