"""The live route table: matched by the gateway itself, prepared whole, swapped in one step.

aiohttp's own router is frozen when the app starts, so it cannot take a reloaded routes
file. The app's router holds health and /openapi.json, and one `LiveTableResource` that
aiohttp asks last, for every other path: it matches the request in the table in service
(that table's own frozen aiohttp `UrlDispatcher`: the same matching, order and 404/405
answers as before) and hands aiohttp that table's match, so aiohttp calls the route's
`RouteHandler` directly and the route template labels the metrics as before. The table is
read once, when the request is matched: a request finishes on the table it started with,
whatever is installed meanwhile.

Everything a table needs is prepared before it serves (`TableBuilder.build`): its
router, one RouteHandler per route with the route's verifier, metric children, rate-limit
text, claim headers and narrowed CORS policy. Upstream pools are kept across tables when
their configuration is unchanged, so their kept-alive connections and health stay;
`Routing.install` swaps the table in one assignment, then drains the pools no longer used
(idle connections close, busy ones after their exchange) and stops their probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from yarl import URL

from common.settings import SettingsError
from common.timestamps import EpochClock
from gateway.app_keys import HEALTH_SESSION
from gateway.assertion import UpstreamIdentity
from gateway.cors import CorsPolicy, narrowed
from gateway.issuers import Issuers
from gateway.metrics import GatewayMetrics
from gateway.openapi import build_public_document, document_bytes
from gateway.pipeline import Forward, RouteHandler, route_handler
from gateway.proxy import Proxy, Resolver, UpstreamPool
from gateway.ratelimit import RateLimiter
from gateway.routes import RouteConfig, RoutesError, RouteTable
from gateway.websocket import Relay, WebSocketRoute

_LOGGER = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PreparedTable:
    """A route table ready to serve: matched by `router`, each route by its handler."""

    table: RouteTable
    digest: str  # SHA-256 of the file's bytes: what a reload compares
    router: web.UrlDispatcher
    pools: Mapping[str, UpstreamPool]
    openapi: bytes  # the public OpenAPI document of these routes


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TableBuilder:
    """Prepares tables with what every route shares (the proxy, verifiers, limiter ...)."""

    def __init__(
        self,
        *,
        proxy: Proxy,
        metrics: GatewayMetrics,
        issuers: Issuers,
        limiter: RateLimiter,
        upstream_identity: UpstreamIdentity | None,
        cors: CorsPolicy,
        clock: EpochClock,
        resolver: Resolver,
        documents: Mapping[str, Mapping[str, Any]],
        relay: Relay,
    ) -> None:
        self.documents = documents  # the services' OpenAPI documents, read once at start
        self.proxy = proxy
        self.metrics = metrics
        self.issuers = issuers
        self.limiter = limiter
        self.upstream_identity = upstream_identity
        self.cors = cors
        self.clock = clock
        self.resolver = resolver
        self.relay = relay  # the last step of websocket routes' handshakes

    def build(
        self, table: RouteTable, digest: str, previous: PreparedTable | None = None
    ) -> PreparedTable:
        """The prepared table; raise RoutesError when a route's CORS would widen the
        global policy (checked here, where PASSGATE_CORS_ORIGINS is known)."""
        policies = route_policies(table, self.cors)
        self.issuers.update(table.issuers, table.issuable_scopes)
        pools = self._pools(table, previous)
        router = web.UrlDispatcher()
        resources: dict[str, web.Resource] = {}
        for route in table.routes:
            resource = resources.get(route.router_path)
            if resource is None:
                resource = resources[route.router_path] = router.add_resource(route.router_path)
            handler = self._handler(route, pools[route.upstream], policies.get(route.name))
            handle = handler.handle
            if route.websocket:
                # Two pipelines: the route's HTTP requests', and its handshakes' ending in
                # the relay; the handshake's Origin is held to the route's CORS policy.
                upgrade = self._handler(
                    route, pools[route.upstream], policies.get(route.name), self.relay.forward
                )
                handle = WebSocketRoute(
                    handler, upgrade, policy=policies.get(route.name, self.cors),
                    metrics=self.relay.metrics,
                ).handle
            for method in route.methods:
                resource.register_route(TableRoute(method, handler, resource, handle))
        router.freeze()
        openapi = document_bytes(build_public_document(table, self.documents))
        return PreparedTable(table, digest, router, pools, openapi)

    def _handler(
        self,
        route: RouteConfig,
        pool: UpstreamPool,
        cors: CorsPolicy | None,
        forward: Forward | None = None,
    ) -> RouteHandler:
        return RouteHandler(
            route, pool, proxy=self.proxy, forwarded=self.proxy.forwarded, metrics=self.metrics,
            verifier=None if route.public else self.issuers.for_route(route),
            limiter=self.limiter, upstream_identity=self.upstream_identity, cors=cors,
            forward=forward,
        )

    def _pools(self, table: RouteTable, previous: PreparedTable | None) -> dict[str, UpstreamPool]:
        """The table's pools: the previous table's where the upstream is unchanged."""
        kept = previous.pools if previous is not None else {}
        pools = {}
        for name, config in table.upstreams.items():
            pool = kept.get(name)
            if pool is None or pool.config != config:
                pool = UpstreamPool(config, clock=self.clock, metrics=self.metrics, resolver=self.resolver)
            pools[name] = pool
        return pools


def route_policies(table: RouteTable, policy: CorsPolicy) -> dict[str, CorsPolicy]:
    """Every narrowing route's CORS policy; RoutesError listing each that would widen."""
    policies, problems = {}, []
    for route in table.routes:
        if route.cors is None:
            continue
        try:
            policies[route.name] = narrowed(policy, route.cors)
        except SettingsError as exc:
            problems.append(f"route {route.name!r}: {exc}")
    if problems:
        raise RoutesError(table.source, problems)
    return policies


class TableRoute(web.ResourceRoute):
    """A route of a prepared table, which knows its RouteHandler (for the CORS hooks)."""

    def __init__(
        self, method: str, handler: RouteHandler, resource: web.Resource, handle: Handler
    ) -> None:
        super().__init__(method, handle, resource)
        self.route_handler = handler


class LiveTableResource(web.AbstractResource):
    """The app router's resource for every path it has no other resource for, asked last
    (indexed at "/"): the match is the table in service's. It also takes the OPTIONS
    preflights of those paths, for aiohttp-cors (gateway.cors)."""

    def __init__(self, routing: Routing) -> None:
        super().__init__()
        self._routing = routing
        self.preflight: web.ResourceRoute | None = None

    def set_preflight_handler(self, handler: Any) -> web.ResourceRoute:
        self.preflight = web.ResourceRoute(hdrs.METH_OPTIONS, handler, self)  # type: ignore[arg-type]
        return self.preflight

    @property
    def canonical(self) -> str:
        return "/"

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        table = self._routing.current  # read once: this request finishes on this table
        assert table is not None, "installed when the app starts"
        match = await table.router.resolve(request)
        if isinstance(match.route, TableRoute):
            return match, set()
        # 404, or 405 with the methods the path has: aiohttp's own answers, except that an
        # OPTIONS to a routed path is a CORS preflight (no table routes OPTIONS).
        allowed = getattr(match.http_exception, "allowed_methods", set())  # type: ignore[attr-defined]
        if allowed and request.method == hdrs.METH_OPTIONS and self.preflight is not None:
            return web.UrlMappingMatchInfo({}, self.preflight), set()
        return None, set(allowed)

    def url_for(self, **kwargs: str) -> URL:
        raise NotImplementedError("the live table builds no URLs")

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("the live table is never a sub-application")

    def get_info(self) -> dict[str, Any]:
        return {"live_table": True}

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 1 if self.preflight is not None else 0

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        return iter([self.preflight] if self.preflight is not None else [])


class Routing:
    """The table in service, its matching, and the lifetime of its pools' probes."""

    def __init__(self, app: web.Application, metrics: GatewayMetrics) -> None:
        self._app = app
        self._metrics = metrics
        self.current: PreparedTable | None = None
        self._pool_tasks: dict[UpstreamPool, list[asyncio.Task[None]]] = {}
        self.resource = LiveTableResource(self)

    def routed_policy(self, request: web.Request) -> CorsPolicy | None:
        handler = route_handler(request)
        return handler.cors if handler is not None else None

    async def preflight_policy(self, request: web.Request, method: str) -> CorsPolicy | None:
        """The CORS policy of the route a `method` request to this path would reach;
        KeyError when none would (aiohttp-cors answers 403)."""
        table = self.current
        assert table is not None
        if method not in hdrs.METH_ALL:
            raise KeyError(method)
        match = await table.router.resolve(request.clone(method=method))
        if not isinstance(match.route, TableRoute):
            raise KeyError(method)
        return match.route.route_handler.cors

    async def install(self, prepared: PreparedTable) -> None:
        """Serve `prepared` from the next request on; start its new pools' probes (new
        DNS-discovered pools resolved first) and drain the pools it no longer uses."""
        previous = self.current
        old = set(previous.pools.values()) if previous is not None else set()
        new = [pool for pool in prepared.pools.values() if pool not in old]
        await asyncio.gather(*(pool.resolve() for pool in new if pool.config.discovery == "dns"))
        for pool in new:
            self._pool_tasks[pool] = self._watch(pool)
        self.current = prepared
        for pool in old - set(prepared.pools.values()):
            self._retire(pool)
            if pool.name not in prepared.pools:
                with contextlib.suppress(KeyError):
                    self._metrics.upstream_healthy.remove(pool.name)

    def _watch(self, pool: UpstreamPool) -> list[asyncio.Task[None]]:
        session = self._app[HEALTH_SESSION]
        tasks = [asyncio.create_task(pool.watch_readiness(session), name=f"readiness-{pool.name}")]
        if pool.config.discovery == "dns":
            tasks.append(asyncio.create_task(pool.watch_dns(), name=f"dns-{pool.name}"))
        return tasks

    def _retire(self, pool: UpstreamPool) -> None:
        for task in self._pool_tasks.pop(pool, ()):
            task.cancel()
        for replica in pool.replicas:
            replica.retire()  # requests still on the old table get their answers
        _LOGGER.info("upstream %s: its old pool drains (replaced or removed by a reload)", pool.name)

    async def close(self) -> None:
        """Stop every probe and close every upstream connection: the gateway stops."""
        tasks = [task for tasks in self._pool_tasks.values() for task in tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pool_tasks.clear()
        if self.current is not None:
            for pool in self.current.pools.values():
                pool.close()
