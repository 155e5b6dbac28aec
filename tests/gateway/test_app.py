"""The two apps: public (no /metrics) and admin (health, readiness, the shared metrics)."""

from __future__ import annotations

from pathlib import Path

from common.app import make_admin_app
from gateway.settings import GatewaySettings

GATEWAY_METRICS = [
    "gateway_upstream_request_duration_seconds",
    "gateway_upstream_retries_total",
    "gateway_upstream_ejections_total",
    "gateway_upstream_healthy_replicas",
    "gateway_auth_failures_total",
    "gateway_jwks_refreshes_total",
    "gateway_jwks_age_seconds",
    "gateway_jwks_keys",
    "gateway_token_cache_lookups_total",
    "gateway_cors_rejections_total",
    "gateway_rate_limited_total",
    "gateway_route_reloads_total",
    "gateway_route_table_loaded_timestamp_seconds",
    "gateway_route_table_info",
    "gateway_issuer_jwks_refreshes_total",
    "gateway_issuer_jwks_age_seconds",
    "gateway_issuer_jwks_keys",
]


async def test_metrics_are_on_the_admin_app_only(make_gateway, aiohttp_client) -> None:
    stack = await make_gateway()
    assert (await stack.client.get("/users/me", headers=stack.bearer())).status == 200
    assert (await stack.client.get("/users/me")).status == 401
    public = await stack.client.get("/metrics")
    assert public.status == 404
    admin = await aiohttp_client(make_admin_app(stack.app))
    response = await admin.get("/metrics")
    assert response.status == 200
    text = await response.text()
    for name in GATEWAY_METRICS:
        assert name in text, name
    assert 'gateway_auth_failures_total{reason="missing_token"} 1.0' in text
    assert 'http_server_requests_total{method="GET",route="/users/me",status_class="2xx"} 1.0' in text
    assert (await admin.get("/healthz")).status == 200
    assert (await admin.get("/readyz")).status == 200


def test_gateway_metric_names_are_exactly_the_contracts() -> None:
    from prometheus_client import CollectorRegistry

    from gateway.metrics import GatewayMetrics

    registry = CollectorRegistry()
    GatewayMetrics(registry)
    names = {metric.name for metric in registry.collect()}
    expected = {name.removesuffix("_total") for name in GATEWAY_METRICS}
    assert names == expected


def test_settings_from_env() -> None:
    settings = GatewaySettings.from_env(
        {
            "PASSGATE_PORT": "18080",
            "PASSGATE_ADMIN_PORT": "19080",
            "PASSGATE_UPSTREAM_USERS": "http://10.0.0.1:8082, http://10.0.0.2:8082",
            "PASSGATE_CORS_ORIGINS": "https://app.example.com,https://*.example.org",
            "PASSGATE_TRUSTED_PROXIES": "10.0.0.0/8",
            "PASSGATE_ROUTES_FILE": "/etc/passgate/routes.yaml",
        }
    )
    assert settings.server.port == 18080 and settings.server.admin_port == 19080
    assert settings.upstream_overrides == {"users": ("http://10.0.0.1:8082", "http://10.0.0.2:8082")}
    assert settings.cors_origins == ("https://app.example.com", "https://*.example.org")
    assert settings.routes_file == Path("/etc/passgate/routes.yaml")
    defaults = GatewaySettings.from_env({})
    assert defaults.server.port == 8080 and defaults.server.admin_port == 9080
    assert defaults.jwks_url == "http://127.0.0.1:8081/.well-known/jwks.json"
    assert defaults.leeway_seconds == 30 and defaults.algorithms == ("RS256",)
    assert defaults.redis_url is None


async def test_errors_are_problem_json_with_request_id(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.get("/orders", headers={"X-Request-Id": "req-12345678"})
    body = await response.json(content_type=None)
    assert response.status == 401
    assert body["status"] == 401 and body["request_id"] == "req-12345678"
    assert body["type"].startswith("urn:passgate:problem:")
    assert response.headers["X-Request-Id"] == "req-12345678"
