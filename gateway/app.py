"""The gateway applications: the public proxy and the admin app with its metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import aiohttp_cors
from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.app_keys import READINESS, REGISTRY
from common.assertion import GATEWAY_ISSUER, signer_from_settings, warn_at_start
from common.timestamps import EpochClock
from gateway.app_keys import (
    CORS_POLICY,
    HEALTH_SESSION,
    JWKS,
    METRICS,
    PROXY,
    RATE_LIMITER,
    ROUTE_HANDLERS,
    ROUTE_TABLE,
    SETTINGS,
    VERIFIER,
)
from gateway.assertion import UpstreamIdentity
from gateway.cors import CorsPolicy, setup_cors
from gateway.headers import ForwardedHeaders, screen
from gateway.jwks import JwksClient
from gateway.metrics import GatewayMetrics
from gateway.openapi import PATH as OPENAPI_PATH
from gateway.openapi import build_public_document, document_bytes, load_documents, service_documents
from gateway.pipeline import Forward, RouteHandler, response_fields_hook
from gateway.proxy import Proxy, Resolver, UpstreamPool, resolve_addresses
from gateway.ratelimit import RateLimiter
from gateway.routes import RouteTable, load_routes
from gateway.settings import GatewaySettings
from gateway.verification import TokenVerifier
from gateway.websocket import Relay, WebSocketMetrics, WebSocketRoute


def create_app(
    settings: GatewaySettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: EpochClock = time.time,
    resolver: Resolver = resolve_addresses,
) -> web.Application:
    """The public gateway: every route of the routes file, health, no /metrics.

    The order every request goes through is stated once, in gateway.pipeline.
    """
    table = _route_table(settings)
    policy = CorsPolicy(
        settings.cors_origins,
        allow_credentials=settings.cors_allow_credentials,
        max_age=settings.cors_max_age_seconds,
    )
    app = make_base_app(
        "gateway",
        registry=registry,
        screen=screen,
        expose_metrics=False,  # served on the admin port only (API.md, Operations)
    )
    metrics = GatewayMetrics(app[REGISTRY])
    app[SETTINGS] = settings
    app[ROUTE_TABLE] = table
    app[METRICS] = metrics
    app[CORS_POLICY] = policy
    proxy = Proxy(forwarded=ForwardedHeaders(settings.trusted_proxies))
    app[PROXY] = proxy
    cors = setup_cors(app, policy)
    app.on_response_prepare.append(response_fields_hook(policy, metrics))
    pools = {
        name: UpstreamPool(config, clock=clock, metrics=metrics, resolver=resolver)
        for name, config in table.upstreams.items()
    }
    # Blocking file I/O at start: the assertion keys (created first with the generate switch).
    signer = signer_from_settings(settings.assertion, issuer=GATEWAY_ISSUER, clock=clock)
    upstream_identity = UpstreamIdentity(signer, clock) if signer is not None else None
    relay = _websocket_relay(app, table, settings, metrics, clock)
    handlers = _add_routes(app, table, pools, proxy, cors, metrics, upstream_identity, relay)
    app[ROUTE_HANDLERS] = handlers
    if signer is None:
        warn_at_start(app, "no PASSGATE_ASSERTION_KEYS_DIR: backends will refuse every identity")
    app.cleanup_ctx.append(_client_ctx(settings, clock))
    app.cleanup_ctx.append(_rate_limiter_ctx(settings, clock))
    document = build_public_document(table, load_documents(service_documents()))
    app.router.add_get(OPENAPI_PATH, _static_json(document_bytes(document)), name="openapi")
    app.cleanup_ctx.append(_readiness_watch_ctx(list(pools.values())))
    app.on_cleanup.append(_close_upstreams(list(pools.values())))
    return app


def _route_table(settings: GatewaySettings) -> RouteTable:
    """The routes file with the environment's replica lists and discovery applied."""
    table = load_routes(
        settings.routes_file, settings.scope_policy.issuable, settings.upstream_overrides
    )
    if settings.discovery is None:
        return table
    upstreams = {
        name: dataclasses.replace(config, discovery=settings.discovery)
        for name, config in table.upstreams.items()
    }
    return dataclasses.replace(table, upstreams=upstreams)


def _add_routes(
    app: web.Application,
    table: RouteTable,
    pools: dict[str, UpstreamPool],
    proxy: Proxy,
    cors: aiohttp_cors.CorsConfig,
    metrics: GatewayMetrics,
    upstream_identity: UpstreamIdentity | None,
    relay: Relay | None,
) -> list[RouteHandler]:
    """One handler per route of the table, each method registered with aiohttp-cors (it
    answers the resource's preflights); routes sharing a path share one resource. A
    websocket route has two: its HTTP requests' and its handshakes' (gateway.websocket)."""
    handlers: list[RouteHandler] = []
    resources: dict[str, web.Resource] = {}
    for route in table.routes:
        resource = resources.get(route.router_path)
        if resource is None:
            resource = resources[route.router_path] = app.router.add_resource(route.router_path)

        def route_handler(forward: Forward | None = None) -> RouteHandler:
            handler = RouteHandler(
                route, pools[route.upstream], proxy=proxy, forwarded=proxy.forwarded,
                metrics=metrics, verifier=None, limiter=None, upstream_identity=upstream_identity,
                forward=forward,
            )
            handlers.append(handler)
            return handler

        handle = route_handler().handle
        if route.websocket:
            assert relay is not None
            handle = WebSocketRoute(
                route_handler(), route_handler(relay.forward),
                policy=app[CORS_POLICY], metrics=relay.metrics,
            ).handle
        for method in route.methods:
            cors.add(resource.add_route(method, handle))
    return handlers


def _websocket_relay(
    app: web.Application,
    table: RouteTable,
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    clock: EpochClock,
) -> Relay | None:
    """The WebSocket relay with its session and sweeper, when a route has `websocket: true`."""
    if not any(route.websocket for route in table.routes):
        return None
    relay = Relay(
        settings.websocket, metrics=WebSocketMetrics(app[REGISTRY]), gateway_metrics=metrics,
        clock=clock,
    )
    app.cleanup_ctx.append(relay.running)
    app.on_shutdown.append(relay.shutdown)
    return relay


def _static_json(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /openapi.json: the public document, built once at start."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "public, max-age=300"}
        )

    return serve


def _client_ctx(
    settings: GatewaySettings, clock: EpochClock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        """One aiohttp client session for JWKS fetches and readiness probes (the proxy path
        has its own lean client, gateway.upstream); the key set and its refresher."""
        # Probe connections are kept only a second when idle, so none outlives a replica that
        # leaves (DNS discovery) for long. (force_close, a new connection per probe, leaked a
        # transport when a probe timed out while connecting.)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=1.0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        metrics = app[METRICS]
        jwks = JwksClient(
            settings.jwks_url,
            session=session,
            algorithms=settings.algorithms,
            metrics=metrics,
            clock=clock,
            refresh_seconds=settings.jwks_refresh_seconds,
            cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
            max_staleness_seconds=settings.jwks_max_staleness_seconds,
            timeout_seconds=settings.jwks_timeout_seconds,
        )
        app[JWKS] = jwks
        app[VERIFIER] = TokenVerifier(
            jwks,
            issuer=settings.issuer,
            audience=settings.audience,
            algorithms=settings.algorithms,
            leeway=settings.leeway_seconds,
            max_lifetime=settings.max_token_lifetime_seconds,
            cache_size=settings.token_cache_size,
            clock=clock,
            metrics=metrics,
            known_scopes=app[ROUTE_TABLE].issuable_scopes,
        )
        app[HEALTH_SESSION] = session
        for handler in app[ROUTE_HANDLERS]:
            handler.verifier = app[VERIFIER]
        app[READINESS].add("jwks", jwks.readiness_check)
        try:
            async with jwks.running():
                yield
        finally:
            await session.close()

    return client_ctx


def _readiness_watch_ctx(
    pools: list[UpstreamPool],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def readiness_watch_ctx(app: web.Application) -> AsyncIterator[None]:
        """Probe every upstream replica's readiness in the background, on the shared session;
        keep the replica sets of DNS-discovered upstreams current (resolved once first)."""
        session = app[HEALTH_SESSION]
        discovered = [pool for pool in pools if pool.config.discovery == "dns"]
        await asyncio.gather(*(pool.resolve() for pool in discovered))
        tasks = [asyncio.create_task(pool.watch_readiness(session)) for pool in pools]
        tasks += [asyncio.create_task(pool.watch_dns()) for pool in discovered]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return readiness_watch_ctx


def _rate_limiter_ctx(
    settings: GatewaySettings, clock: EpochClock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def rate_limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        limiter = RateLimiter(clock=clock, redis_url=settings.redis_url, registry=app[REGISTRY])
        app[RATE_LIMITER] = limiter
        app[READINESS].add_detail("rate_limits", limiter.describe)
        for handler in app[ROUTE_HANDLERS]:
            handler.limiter = limiter
        try:
            yield
        finally:
            await limiter.close()

    return rate_limiter_ctx


def _close_upstreams(pools: list[UpstreamPool]) -> Callable[[web.Application], Awaitable[None]]:
    async def close_upstreams(app: web.Application) -> None:
        """Close every kept-alive upstream connection when the gateway stops."""
        for pool in pools:
            pool.close()

    return close_upstreams
