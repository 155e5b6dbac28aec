"""Rate limits: token buckets per caller and route, in memory and shared through Redis."""

from __future__ import annotations

import uuid

from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.app_keys import JWKS
from gateway.ratelimit import MemoryBuckets
from gateway.routes import RateLimit
from gateway.settings import GatewaySettings
from tests.support.gateway_under_test import AUDIENCE, ISSUER, write_routes

TIGHT = {"users_me_read": {"rate_limit": {"requests": 1, "per": 60, "burst": 2}}}


async def test_bucket_refuses_with_429_and_headers(make_gateway) -> None:
    stack = await make_gateway(routes=TIGHT)
    headers = stack.bearer()
    first = await stack.client.get("/users/me", headers=headers)
    assert first.status == 200
    assert first.headers["RateLimit-Policy"] == '"users-me-read";q=2;w=120'
    assert first.headers["RateLimit"].startswith('"users-me-read";r=1;')
    assert (await stack.client.get("/users/me", headers=headers)).status == 200
    refused = await stack.client.get("/users/me", headers=headers)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert refused.headers["Retry-After"] == "60"
    assert refused.headers["RateLimit"] == '"users-me-read";r=0;t=60'
    assert stack.metric("gateway_rate_limited_total", {"route": "users-me-read"}) == 1
    assert len(stack.log) == 2
    stack.clock.advance(60)
    assert (await stack.client.get("/users/me", headers=headers)).status == 200


async def test_buckets_are_per_caller_and_per_route(make_gateway) -> None:
    stack = await make_gateway(routes=TIGHT)
    alice, bob = stack.bearer(sub="alice"), stack.bearer(sub="bob")
    for _ in range(2):
        await stack.client.get("/users/me", headers=alice)
    assert (await stack.client.get("/users/me", headers=alice)).status == 429
    assert (await stack.client.get("/users/me", headers=bob)).status == 200
    assert (await stack.client.get("/orders", headers=alice)).status == 200


async def test_anonymous_callers_are_limited_by_address(make_gateway) -> None:
    stack = await make_gateway(routes={"auth": {"rate_limit": {"requests": 1, "per": 60, "burst": 1}}})
    assert (await stack.client.post("/auth/login")).status == 201
    assert (await stack.client.post("/auth/login")).status == 429


def test_memory_buckets_stay_bounded() -> None:
    buckets = MemoryBuckets(lambda: 0.0, max_buckets=10)
    for index in range(100):
        buckets.take(f"caller-{index}", RateLimit(1, 1.0, 1))
    assert len(buckets._buckets) == 10


def test_an_active_caller_keeps_its_bucket_while_new_callers_come() -> None:
    """The least recently used bucket is forgotten, never the one of a caller still at it."""
    buckets = MemoryBuckets(lambda: 0.0, max_buckets=10)
    limit = RateLimit(1, 3600.0, 2)
    assert buckets.take("busy", limit).allowed and buckets.take("busy", limit).allowed
    for index in range(100):
        buckets.take(f"passer-by-{index}", limit)
        assert not buckets.take("busy", limit).allowed  # still empty: not forgotten, not reset


async def test_two_gateways_sharing_redis_enforce_one_limit(
    make_gateway, aiohttp_client, tmp_path, jwks_server, clock, redis_url
) -> None:
    """Two gateway apps on one Redis: the burst of 3 is shared, not 3 each."""
    routes = {"users_me_read": {"rate_limit": {"requests": 1, "per": 3600, "burst": 3}}}
    first = await make_gateway(routes=routes, redis_url=redis_url)
    routes_file = write_routes(tmp_path / "second.yaml", first.upstreams, **routes)
    second_app = create_app(
        GatewaySettings(routes_file=routes_file, issuer=ISSUER, audience=AUDIENCE,
                        jwks_url=jwks_server.url, redis_url=redis_url),
        registry=CollectorRegistry(),
        clock=clock,
    )
    second = await aiohttp_client(second_app)
    await second_app[JWKS].refresh()
    headers = first.bearer(sub=f"shared-{uuid.uuid4().hex}")
    statuses = []
    for client in (first.client, second, first.client, second, first.client):
        statuses.append((await client.get("/users/me", headers=headers)).status)
    assert statuses == [200, 200, 200, 429, 429]


async def test_unreachable_redis_falls_back_to_local_buckets(make_gateway) -> None:
    stack = await make_gateway(routes=TIGHT, redis_url="redis://127.0.0.1:1/0")
    headers = stack.bearer()
    statuses = [(await stack.client.get("/users/me", headers=headers)).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_the_limiter_says_which_store_decides(make_gateway) -> None:
    """Without Redis the memory store is the configured one and always up; with Redis
    unreachable the gateway stays ready but says its limits are per replica."""
    local = await make_gateway(routes=TIGHT)
    await local.client.get("/users/me", headers=local.bearer())
    assert local.metric("gateway_rate_limit_backend_up", {"backend": "memory"}) == 1
    assert local.metric("gateway_rate_limit_fallbacks_total") == 0
    ready = await local.client.get("/readyz")
    assert (await ready.json())["details"]["rate_limits"].startswith("local")

    cut_off = await make_gateway(routes=TIGHT, redis_url="redis://127.0.0.1:1/0")
    await cut_off.client.get("/users/me", headers=cut_off.bearer())
    assert cut_off.metric("gateway_rate_limit_backend_up", {"backend": "redis"}) == 0
    assert cut_off.metric("gateway_rate_limit_fallbacks_total") == 1
    ready = await cut_off.client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["details"]["rate_limits"].startswith("degraded")
