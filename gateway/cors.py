"""CORS that cannot be misconfigured, on top of aiohttp-cors.

Origins come from an explicit list: exact origins (`https://app.example.com`), anchored
wildcard-subdomain patterns (`https://*.example.com` matches one or more labels before
`.example.com`, nothing else), or `*` alone. Patterns are compiled and checked once at
load; `*` together with credentials is refused at load, as is `null`.

A route of the routes file may narrow this policy (`cors:` origins, methods, exposed
headers; `narrowed`), never widen it: what would widen it is refused at start and on reload.

aiohttp-cors answers preflights (an OPTIONS to a routed path, before any token check) and
adds Access-Control-Allow-Origin to responses of the routes, errors included, since it
works from on_response_prepare; it asks `LiveTableAdapter`, which answers from the route
table in service, so each route's narrowed policy applies. What it lacks is added by the
gateway's response hook, which runs after it (gateway.pipeline): `Vary: Origin` on every
response, the same allow-origin headers on responses outside the routes (404, 405,
health), and counting of refused origins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import hdrs, web
from aiohttp_cors.abc import AbstractRouterAdapter

from common.settings import SettingsError
from gateway.routes import RouteCors

# Errors and rate limits are only useful to a browser app if it may read these.
EXPOSED_HEADERS = (
    "WWW-Authenticate",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "X-Request-Id",
    "Location",
)
ALLOWED_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-Id",
    "traceparent",
    "tracestate",
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


class CorsPolicy:
    """Which origins may read responses, decided by set lookup or a precompiled pattern."""

    def __init__(
        self,
        origins: tuple[str, ...] = (),
        *,
        allow_credentials: bool = False,
        max_age: int = 600,
        expose_headers: tuple[str, ...] = EXPOSED_HEADERS,
        methods: frozenset[str] | None = None,
    ) -> None:
        self.origins = tuple(origins)
        self.max_age = max_age
        # Methods a cross-origin request may use; None: every method the route has.
        self.methods = methods
        self.allow_any = False
        self.exact: frozenset[str] = frozenset()
        self.patterns: tuple[re.Pattern[str], ...] = ()
        exact: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for origin in origins:
            if origin == "*":
                if allow_credentials:
                    raise SettingsError(
                        "PASSGATE_CORS_ORIGINS='*' with PASSGATE_CORS_ALLOW_CREDENTIALS=true would "
                        "let any site act with a user's credentials; list the origins instead"
                    )
                self.allow_any = True
            elif "*" in origin:
                patterns.append(_compile_pattern(origin))
            else:
                exact.add(_check_origin(origin))
        self.exact = frozenset(exact)
        self.patterns = tuple(patterns)
        self.allow_credentials = allow_credentials
        self.expose_headers = tuple(expose_headers)
        self.options = aiohttp_cors.ResourceOptions(
            allow_credentials=allow_credentials,
            expose_headers=self.expose_headers,
            allow_headers=ALLOWED_REQUEST_HEADERS,
            max_age=max_age,
        )
        self._expose_value = ",".join(self.expose_headers)

    @property
    def enabled(self) -> bool:
        return self.allow_any or bool(self.exact) or bool(self.patterns)

    def allows(self, origin: str) -> bool:
        if origin in self.exact:
            return True
        if origin == "null":
            return False  # sandboxed frames and file: pages share this one value
        if self.allow_any:
            return True
        return any(pattern.fullmatch(origin) for pattern in self.patterns)

    def permits(self, origin: str, method: str) -> bool:
        """True when `origin` may read the answer to a `method` request."""
        return (self.methods is None or method in self.methods) and self.allows(origin)

    def add_headers(self, response: web.StreamResponse, origin: str) -> None:
        headers = response.headers
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        if self._expose_value:
            headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = self._expose_value
        if self.allow_credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"


def _check_origin(origin: str) -> str:
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or origin != origin.lower()
    ):
        raise SettingsError(
            f"PASSGATE_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], lowercase)"
        )
    return origin


def _compile_pattern(origin: str) -> re.Pattern[str]:
    """`https://*.example.com[:port]` -> an anchored regex; anything else with '*' is refused."""
    scheme, sep, rest = origin.partition("://")
    host, _, port = rest.partition(":")
    if (
        not sep
        or scheme not in ("http", "https")
        or not host.startswith("*.")
        or "*" in host[2:]
        or host.count(".") < 2  # *.com would match every .com site
        or (port and not port.isdigit())
    ):
        raise SettingsError(
            f"PASSGATE_CORS_ORIGINS: pattern {origin!r} must look like https://*.example.com"
        )
    _check_origin(f"{scheme}://{host[2:]}" + (f":{port}" if port else ""))
    regex = (
        re.escape(scheme + "://")
        + rf"(?:{_LABEL}\.)+"
        + re.escape(host[2:])
        + (re.escape(":" + port) if port else "")
    )
    return re.compile(regex)


def narrowed(policy: CorsPolicy, cors: RouteCors) -> CorsPolicy:
    """The policy of a route that narrows `policy` (APISIX's and Kong's per-route CORS);
    raise SettingsError naming what would widen it: an origin the global list does not
    allow, or an exposed header it does not expose."""
    origins = policy.origins if cors.origins is None else cors.origins
    for origin in cors.origins or ():
        if not _within(policy, origin):
            raise SettingsError(
                f"cors.origins: {origin!r} is not allowed by PASSGATE_CORS_ORIGINS "
                "(a route may only narrow the global list)"
            )
    exposed = policy.expose_headers if cors.expose_headers is None else cors.expose_headers
    known = {name.lower() for name in policy.expose_headers}
    wider = [name for name in exposed if name.lower() not in known]
    if wider:
        raise SettingsError(
            f"cors.expose_headers: {', '.join(wider)} not among the gateway's exposed headers "
            f"({', '.join(policy.expose_headers)})"
        )
    return CorsPolicy(
        origins,
        allow_credentials=policy.allow_credentials,
        max_age=policy.max_age,
        expose_headers=exposed,
        methods=frozenset(cors.methods) if cors.methods is not None else None,
    )


def _within(policy: CorsPolicy, origin: str) -> bool:
    """True when every origin `origin` (exact or pattern) stands for is allowed by `policy`."""
    if origin == "*":
        return policy.allow_any
    if "*" not in origin:
        return policy.allows(_check_origin(origin))
    _compile_pattern(origin)  # refuses a malformed pattern with its own message
    if policy.allow_any:
        return True
    scheme, _, rest = origin.partition("://")
    host, _, port = rest[2:].partition(":")
    for pattern in policy.origins:
        p_scheme, _, p_rest = pattern.partition("://")
        if not p_rest.startswith("*."):
            continue
        p_host, _, p_port = p_rest[2:].partition(":")
        if (p_scheme, p_port) == (scheme, port) and (host == p_host or host.endswith("." + p_host)):
            return True
    return False


class _AllowedOrigins(Mapping[str, aiohttp_cors.ResourceOptions]):
    """aiohttp-cors looks origins up in a mapping; this one answers from a policy."""

    def __init__(self, policy: CorsPolicy, method: str | None = None) -> None:
        self._policy = policy
        # The method of the request (or preflight) asked about: outside a route's narrowed
        # methods, no origin is allowed.
        self._refused = method is not None and policy.methods is not None and method not in policy.methods

    def __getitem__(self, origin: str) -> aiohttp_cors.ResourceOptions:
        if origin in self:
            return self._policy.options
        raise KeyError(origin)

    def __contains__(self, origin: object) -> bool:
        return (
            isinstance(origin, str) and origin != "*" and not self._refused
            and self._policy.allows(origin)
        )

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._policy.exact))

    def __len__(self) -> int:
        return len(self._policy.exact)

    def __bool__(self) -> bool:
        # aiohttp-cors refuses a preflight outright when the mapping is empty; patterns and
        # `*` allow origins that no listing shows.
        return self._policy.enabled and not self._refused


class RouteLookup(Protocol):
    """What the CORS adapter asks the live route table (gateway.routing)."""

    def routed_policy(self, request: web.Request) -> CorsPolicy | None:
        """The policy of the route the request was dispatched to, if it narrows CORS."""

    async def preflight_policy(self, request: web.Request, method: str) -> CorsPolicy | None:
        """The policy for `method` on the request's path (raise KeyError: no such route)."""


class LiveTableAdapter(AbstractRouterAdapter):
    """aiohttp-cors's view of the gateway's routes, answered from the route table in service.

    aiohttp-cors keys its configuration on the router's resources, which are frozen when
    the app starts; the gateway's routes change on reload (gateway.reload). So its one
    resource here is the live table's (gateway.routing), which takes the preflights of
    every routed path, and this adapter answers aiohttp-cors's questions from the table:
    the route a request was matched to (its narrowed policy, or the global one), and for a
    preflight the route of its path and requested method (none: 403, as for a method no
    route has). `AbstractRouterAdapter` and `CorsConfig(router_adapter=...)` are
    aiohttp-cors's public extension points.
    """

    def __init__(self, policy: CorsPolicy, routes: RouteLookup, resource: LiveResource) -> None:
        self._routes = routes
        self._resource = resource
        self._default = _AllowedOrigins(policy)

    def add_preflight_handler(self, routing_entity, handler, webview: bool = False):  # type: ignore[no-untyped-def]
        assert routing_entity is self._resource, "the live table's resource"
        self._resource.set_preflight_handler(handler)

    def set_config_for_routing_entity(self, routing_entity, config):  # type: ignore[no-untyped-def]
        pass  # the configuration is the live table's

    def is_preflight_request(self, request: web.Request) -> bool:
        route = request.match_info.route
        return route is not None and route is self._resource.preflight

    def is_cors_enabled_on_request(self, request: web.Request) -> bool:
        # Asked by aiohttp-cors's response hook, which gateway.pipeline calls for requests
        # with an Origin only.
        route = request.match_info.route
        return hasattr(route, "route_handler") or route is self._resource.preflight

    async def get_preflight_request_config(self, preflight_request, origin, requested_method):  # type: ignore[no-untyped-def]
        policy = await self._routes.preflight_policy(preflight_request, requested_method)
        if policy is None:
            return self._default
        return _AllowedOrigins(policy, requested_method)

    def get_non_preflight_request_config(self, request: web.Request):  # type: ignore[no-untyped-def]
        policy = self._routes.routed_policy(request)
        if policy is None:
            return self._default
        return _AllowedOrigins(policy, request.method)


class LiveResource(Protocol):
    """The live table's resource, as the adapter uses it (gateway.routing.LiveTableResource)."""

    preflight: web.AbstractRoute | None

    def set_preflight_handler(self, handler: object) -> web.AbstractRoute: ...


def setup_cors(
    app: web.Application, policy: CorsPolicy, routes: RouteLookup, resource: LiveResource
) -> aiohttp_cors.CorsConfig:
    """Install aiohttp-cors for the live table's `resource`; gateway.pipeline's response
    hook completes it.

    Our own adapter, not aiohttp-cors's: its public entry points (`aiohttp_cors.setup(app,
    defaults=...)`) copy the defaults into a plain dict of exact origins, so a
    wildcard-subdomain pattern (`https://*.example.com`) could never match, and they key
    configuration on resources that cannot change after start.
    """
    cors = aiohttp_cors.CorsConfig(app, router_adapter=LiveTableAdapter(policy, routes, resource))
    cors.add(resource)
    return cors
