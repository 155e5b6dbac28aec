"""The gateway applications: the public proxy and the admin app with its metrics."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.app_keys import READINESS, REGISTRY
from common.assertion import GATEWAY_ISSUER, signer_from_settings, warn_at_start
from common.timestamps import EpochClock
from gateway.app_keys import (
    CORS_POLICY,
    HEALTH_SESSION,
    ISSUERS,
    JWKS,
    METRICS,
    PROXY,
    RATE_LIMITER,
    RELOADER,
    ROUTING,
    SETTINGS,
    VERIFIER,
)
from gateway.assertion import UpstreamIdentity
from gateway.cors import CorsPolicy, setup_cors
from gateway.headers import ForwardedHeaders, screen
from gateway.issuers import Issuers
from gateway.metrics import GatewayMetrics
from gateway.openapi import PATH as OPENAPI_PATH
from gateway.openapi import load_documents, service_documents
from gateway.pipeline import response_fields_hook
from gateway.proxy import Proxy, Resolver, resolve_addresses
from gateway.ratelimit import RateLimiter
from gateway.reload import RouteReloader, table_from
from gateway.routes import RouteTable, read_bytes
from gateway.routing import Routing, TableBuilder, route_policies
from gateway.settings import GatewaySettings
from gateway.websocket import Relay, WebSocketMetrics


def create_app(
    settings: GatewaySettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: EpochClock = time.time,
    resolver: Resolver = resolve_addresses,
) -> web.Application:
    """The public gateway: every route of the routes file, health, no /metrics.

    The order every request goes through is stated once, in gateway.pipeline; the routes
    are the live table of gateway.routing, reloaded by gateway.reload.
    """
    # Read and checked here, so a broken file or a CORS narrowing that would widen the
    # global list stops the start (exit 2) rather than the first request.
    data = read_bytes(settings.routes_file)
    table = table_from(data, settings)
    policy = CorsPolicy(
        settings.cors_origins,
        allow_credentials=settings.cors_allow_credentials,
        max_age=settings.cors_max_age_seconds,
    )
    route_policies(table, policy)
    app = make_base_app(
        "gateway",
        registry=registry,
        screen=screen,
        expose_metrics=False,  # served on the admin port only (API.md, Operations)
        own_response_hook=True,  # response_fields_hook stamps every answer's common fields
    )
    metrics = GatewayMetrics(app[REGISTRY])
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[CORS_POLICY] = policy
    proxy = Proxy(forwarded=ForwardedHeaders(settings.trusted_proxies))
    app[PROXY] = proxy
    routing = app[ROUTING] = Routing(app, metrics)
    app.router.add_get(OPENAPI_PATH, _openapi(routing), name="openapi")
    # Asked last by the app's router: every path the other resources do not take.
    app.router.register_resource(routing.resource)
    # aiohttp-cors's response hook is taken out of the app's signal and called by ours, for
    # requests with an Origin only: without one it adds nothing (CORS 6.1.1), and every
    # hook the signal runs costs each answer a coroutine.
    hooks_before = len(app.on_response_prepare)
    setup_cors(app, policy, routing, routing.resource)
    cors_hooks = tuple(app.on_response_prepare[hooks_before:])
    del app.on_response_prepare[hooks_before:]
    app.on_response_prepare.append(response_fields_hook(policy, metrics, cors_hooks))
    # Blocking file I/O at start: the assertion keys (created first with the generate switch).
    signer = signer_from_settings(settings.assertion, issuer=GATEWAY_ISSUER, clock=clock)
    upstream_identity = UpstreamIdentity(signer, clock) if signer is not None else None
    if signer is None:
        warn_at_start(app, "no PASSGATE_ASSERTION_KEYS_DIR: backends will refuse every identity")
    app.cleanup_ctx.append(_client_ctx(settings, clock, table.issuable_scopes))
    app.cleanup_ctx.append(_rate_limiter_ctx(settings, clock))
    builder = functools.partial(
        TableBuilder, proxy=proxy, metrics=metrics, upstream_identity=upstream_identity,
        cors=policy, clock=clock, resolver=resolver,
        documents=load_documents(service_documents()),
        relay=_websocket_relay(app, settings, clock),
    )
    app.cleanup_ctx.append(_routing_ctx(settings, builder, table, data))
    return app


def _websocket_relay(app: web.Application, settings: GatewaySettings, clock: EpochClock) -> Relay:
    """The WebSocket relay of routes with `websocket: true` (gateway.websocket), with its
    session and sweeper: made whatever the first table says, since a reload may add one."""
    relay = Relay(settings.websocket, metrics=WebSocketMetrics(app[REGISTRY]), clock=clock)
    app.cleanup_ctx.append(relay.running)
    app.on_shutdown.append(relay.shutdown)
    return relay


def _openapi(routing: Routing) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /openapi.json: the public document of the routes in service, built when they load."""

    async def serve(request: web.Request) -> web.Response:
        assert routing.current is not None
        return web.Response(
            body=routing.current.openapi,
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    return serve


def _client_ctx(
    settings: GatewaySettings, clock: EpochClock, known_scopes: frozenset[str]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        """One aiohttp client session for JWKS fetches and readiness probes (the proxy path
        has its own lean client, gateway.upstream); the trusted issuers and their key sets."""
        # Probe connections are kept only a second when idle, so none outlives a replica that
        # leaves (DNS discovery) for long. (force_close, a new connection per probe, leaked a
        # transport when a probe timed out while connecting.)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=1.0),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        issuers = Issuers(
            settings, session=session, metrics=app[METRICS], clock=clock, known_scopes=known_scopes
        )
        app[ISSUERS] = issuers
        app[JWKS] = issuers.default_jwks
        app[VERIFIER] = issuers.default
        app[HEALTH_SESSION] = session
        # Readiness follows Passgate's own issuer: a partner's outage must not take every
        # route out of service (its routes answer 503 keys-unavailable meanwhile).
        app[READINESS].add("jwks", issuers.default_jwks.readiness_check)
        try:
            async with issuers.default_jwks.running():
                yield
        finally:
            await issuers.close()
            await session.close()

    return client_ctx


def _routing_ctx(
    settings: GatewaySettings,
    builder: Callable[..., TableBuilder],
    table: RouteTable,
    data: bytes,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def routing_ctx(app: web.Application) -> AsyncIterator[None]:
        """The first table in service, then its reloads; every upstream closed at the end."""
        routing = app[ROUTING]
        reloader = RouteReloader(
            settings,
            routing,
            builder(issuers=app[ISSUERS], limiter=app[RATE_LIMITER]),
            app[METRICS],
        )
        app[RELOADER] = reloader
        try:
            await reloader.start(table, data)
            async with reloader.running():
                yield
        finally:
            await routing.close()

    return routing_ctx


def _rate_limiter_ctx(
    settings: GatewaySettings, clock: EpochClock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def rate_limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        limiter = RateLimiter(clock=clock, redis_url=settings.redis_url, registry=app[REGISTRY])
        app[RATE_LIMITER] = limiter
        app[READINESS].add_detail("rate_limits", limiter.describe)
        try:
            yield
        finally:
            await limiter.close()

    return rate_limiter_ctx
