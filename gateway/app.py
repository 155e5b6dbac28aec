"""The gateway applications: the public proxy and the admin app with its metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from common.app import make_base_app
from common.context import user_id_var
from common.errors import insufficient_scope, too_many_requests
from common.keys import IDENTITY, READINESS, REGISTRY
from gateway.cors import CorsPolicy, setup_cors
from gateway.headers import ForwardedHeaders, request_hygiene_middleware
from gateway.jwks import JwksClient
from gateway.keys import (
    CORS_POLICY,
    JWKS,
    METRICS,
    PROXY,
    RATE_LIMITER,
    ROUTE_TABLE,
    SETTINGS,
    VERIFIER,
)
from gateway.metrics import GatewayMetrics
from gateway.openapi import PATH as OPENAPI_PATH
from gateway.openapi import build_public_document, document_bytes, load_documents, service_documents
from gateway.proxy import Proxy, UpstreamPool
from gateway.ratelimit import RateLimiter, policy_header
from gateway.routes import RouteConfig, load_routes
from gateway.settings import GatewaySettings
from gateway.tokens import TokenVerifier, authenticate

Clock = Callable[[], float]


def create_app(
    settings: GatewaySettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock = time.time,
) -> web.Application:
    """The public gateway: every route of the routes file, health, no /metrics.

    Middleware order (outermost first): request context, metrics, problem errors from the
    base app, then request hygiene, so that identity headers are gone and ambiguous paths
    refused before any gateway code looks at a request. CORS preflights are answered by
    aiohttp-cors's OPTIONS routes, which never ask for a token; token checks, scopes and
    rate limits run inside each proxied route, in that order.
    """
    table = load_routes(settings.routes_file, settings.upstream_overrides)
    policy = CorsPolicy(
        settings.cors_origins,
        allow_credentials=settings.cors_allow_credentials,
        max_age=settings.cors_max_age_seconds,
    )
    app = make_base_app(
        "gateway",
        registry=registry,
        middlewares=[request_hygiene_middleware],
        expose_metrics=False,  # served on the admin port only (API.md, Operations)
    )
    metrics = GatewayMetrics(app[REGISTRY])
    app[SETTINGS] = settings
    app[ROUTE_TABLE] = table
    app[METRICS] = metrics
    app[CORS_POLICY] = policy
    app[PROXY] = Proxy(forwarded=ForwardedHeaders(settings.trusted_proxies))
    app.cleanup_ctx.append(_client_ctx(settings, clock))
    app.cleanup_ctx.append(_rate_limiter_ctx(settings, clock))
    cors = setup_cors(app, policy, metrics)
    pools = {
        name: UpstreamPool(config, clock=clock, metrics=metrics)
        for name, config in table.upstreams.items()
    }
    resources: dict[str, web.Resource] = {}
    for route in table.routes:
        resource = resources.get(route.router_path)
        if resource is None:
            resource = resources[route.router_path] = app.router.add_resource(route.router_path)
        handler = _route_handler(app, route, pools[route.upstream])
        for method in route.methods:
            cors.add(resource.add_route(method, handler))
    document = build_public_document(table, load_documents(service_documents()))
    app.router.add_get(OPENAPI_PATH, _static_json(document_bytes(document)), name="openapi")
    app.cleanup_ctx.append(_readiness_watch_ctx(list(pools.values())))
    return app


def _static_json(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /openapi.json: the public document, built once at start."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "public, max-age=300"}
        )

    return serve


def _client_ctx(
    settings: GatewaySettings, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        """One client session for upstreams and JWKS; the key set and its refresher."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0),
            # Never keep upstream cookies: one session serves every user.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bodies pass through as they are; no Accept-Encoding or User-Agent invented.
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"),
        )
        # aiohttp resends an idempotent request once when a connection drops after it was
        # sent. The gateway must never send a request to a backend twice on its own: its
        # only retry is its own, after a connect failure. No public switch exists for this.
        session._retry_connection = False
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
        app[PROXY].session = session
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
        """Probe every upstream replica's readiness in the background, on the shared session."""
        session = app[PROXY].session
        assert session is not None, "the client session starts first"
        tasks = [asyncio.create_task(pool.watch_readiness(session)) for pool in pools]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return readiness_watch_ctx


def _rate_limiter_ctx(
    settings: GatewaySettings, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def rate_limiter_ctx(app: web.Application) -> AsyncIterator[None]:
        limiter = RateLimiter(clock=clock, redis_url=settings.redis_url)
        app[RATE_LIMITER] = limiter
        try:
            yield
        finally:
            await limiter.close()

    return rate_limiter_ctx


def _route_handler(
    app: web.Application, route: RouteConfig, pool: UpstreamPool
) -> Callable[[web.Request], object]:
    """The pipeline of one route: authenticate, authorize, rate-limit, forward."""
    public = route.public
    policy = policy_header(route) if route.rate_limit is not None else None
    metrics = app[METRICS]
    scope_failure = metrics.auth_failure["insufficient_scope"]
    limited = metrics.rate_limited.labels(route.name)
    proxy = app[PROXY]
    forwarded = proxy.forwarded

    async def handle(request: web.Request) -> web.StreamResponse:
        client, forwarded_headers = forwarded.resolve(request)
        identity_headers: dict[str, str] = {}
        caller = f"ip:{client}"
        if not public:
            identity = await authenticate(request, app[VERIFIER], metrics)
            request[IDENTITY] = identity
            user_id_var.set(identity.subject)
            if not route.allows(identity.scopes):
                scope_failure.inc()
                raise insufficient_scope(route.scope_text())
            identity_headers = identity.to_headers()
            caller = f"sub:{identity.subject}"
        extra = None
        if policy is not None:
            decision = await app[RATE_LIMITER].take(route, caller)
            extra = decision.headers(policy)
            if not decision.allowed:
                limited.inc()
                problem = too_many_requests(decision.retry_after)
                problem.headers.update(extra)
                raise problem
        return await proxy.forward(request, route, pool, identity_headers, forwarded_headers, extra)

    return handle
