"""What a loaded routes file is: frozen values the gateway builds its routes from.

Every default lives in routes.schema.json, the one place it is stated; these classes have
none, so a value always comes from the file, the file's `defaults:`, or the schema.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

PUBLIC = "public"
TOKEN = "token"
ROUTABLE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Never routed: TRACE echoes requests (and their credentials) back, CONNECT opens tunnels,
# and OPTIONS is the CORS preflight, answered by the gateway itself without a token.
REFUSED_METHODS = {
    "TRACE": "TRACE is never routed",
    "CONNECT": "CONNECT is never routed",
    "OPTIONS": "OPTIONS is answered by the gateway (CORS preflight)",
}
RESERVED_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")
# Internal backend endpoints (profile provisioning ...) are reachable only inside the mesh.
INTERNAL_PREFIX = "/internal"
# PASSGATE_UPSTREAM_<NAME> (a comma list) overrides the replicas of upstream <name>.
UPSTREAM_ENV_PREFIX = "PASSGATE_UPSTREAM_"
# The issuer every token route accepts unless it names others: Passgate's own auth,
# configured by PASSGATE_ISSUER, PASSGATE_JWKS_URL and the other token settings.
DEFAULT_ISSUER = "passgate"
# Identity headers the gateway itself sets; a route's claims_to_headers cannot name them.
RESERVED_IDENTITY_HEADERS = frozenset(
    {"x-user-id", "x-user-scopes", "x-user-client-id", "x-user-token-id", "x-user-assertion",
     "x-user-issuer"}
)


class RoutesError(ValueError):
    """The routes file is invalid; `problems` lists every problem found, one a line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + f"\n{source}: ".join(problems))
        self.source = source
        self.problems = problems


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `requests` per `per` seconds on average, bursts up to `burst`."""

    requests: int
    per: float
    burst: int
    # Derived once: every rate-limited request reads them.
    rate: float = dataclasses.field(init=False, repr=False, compare=False)  # tokens a second
    interval: float = dataclasses.field(init=False, repr=False, compare=False)  # seconds a token (GCRA)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", self.requests / self.per)
        object.__setattr__(self, "interval", self.per / self.requests)


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    replicas: tuple[str, ...]
    eject_after: int
    eject_seconds: float
    connect_timeout: float
    # Seconds between readiness probes (GET /readyz) of each replica.
    health_interval: float
    # static: the replicas are the URLs; dns: every address of each URL's host is a
    # replica (a headless Service), resolved again every resolve_interval seconds.
    discovery: str
    resolve_interval: float


@dataclasses.dataclass(frozen=True, slots=True)
class IssuerConfig:
    """A trusted token issuer besides Passgate's auth (a partner's identity provider)."""

    name: str
    issuer: str  # the `iss` its tokens carry
    jwks_url: str
    audience: str
    algorithms: tuple[str, ...]
    leeway: float
    max_lifetime: float


@dataclasses.dataclass(frozen=True, slots=True)
class RouteCors:
    """A route's narrowing of the global CORS policy: None keeps the global value."""

    origins: tuple[str, ...] | None
    methods: tuple[str, ...] | None
    expose_headers: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    path: str
    methods: tuple[str, ...]
    upstream: str
    public: bool
    scopes: frozenset[str]
    scope_mode: str  # all: every listed scope; any: at least one
    timeout: float
    max_body_bytes: int
    rate_limit: RateLimit | None
    forward_basic_auth: bool
    # A GET with Upgrade: websocket is relayed as a WebSocket (gateway.websocket).
    websocket: bool
    # Issuer names whose tokens the route accepts (token routes; DEFAULT_ISSUER unless set).
    issuers: tuple[str, ...]
    # (claim, header) pairs: verified claims forwarded as X-User-* headers.
    claims_to_headers: tuple[tuple[str, str], ...]
    cors: RouteCors | None  # None: the global CORS policy

    @property
    def router_path(self) -> str:
        """The aiohttp path pattern: `{id}` is one segment, `{id:uuid}` one segment of that
        type, a final `*` any remainder."""
        path = _TYPED_PARAM.sub(lambda m: f"{{{m[1]}:{PARAM_TYPES[m[2]]}}}", self.path)
        if path.endswith("/*"):
            return path[:-1] + "{tail:.+}"
        return path

    @property
    def template(self) -> str:
        """The path with parameter types erased: /orders/{id:uuid} is /orders/{id}."""
        return _TYPED_PARAM.sub(lambda m: f"{{{m[1]}}}", self.path)

    def allows(self, scopes: frozenset[str]) -> bool:
        if not self.scopes:
            return True
        if self.scope_mode == "any":
            return not self.scopes.isdisjoint(scopes)
        return self.scopes <= scopes

    def scope_text(self) -> str:
        return " ".join(sorted(self.scopes))


@dataclasses.dataclass(frozen=True, slots=True)
class RouteTable:
    source: str
    issuable_scopes: frozenset[str]
    upstreams: Mapping[str, UpstreamConfig]
    routes: tuple[RouteConfig, ...]
    # Issuers declared in the file, by name (DEFAULT_ISSUER comes from the settings).
    issuers: Mapping[str, IssuerConfig] = dataclasses.field(default_factory=dict)


def override_key(upstream: str) -> str:
    """How PASSGATE_UPSTREAM_<NAME> names an upstream: lowercase, '-' written as '_'
    (a variable name cannot hold '-'), so USER_PROFILES overrides user-profiles."""
    return upstream.replace("-", "_")


def override_variable(upstream: str) -> str:
    return UPSTREAM_ENV_PREFIX + override_key(upstream).upper()


def replica_problem(url: str) -> str | None:
    """Why `url` cannot be a replica's base URL, or None. Used for the routes file and for
    PASSGATE_UPSTREAM_<NAME>, so both are held to one rule."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} must be an http:// or https:// base URL"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return f"{url!r} must be scheme://host:port only (no path, query or user)"
    return None


# Parameter types a path may give (`{id:uuid}`): a value of another shape matches no route,
# so it is a 404 before any token or scope is looked at (an id that cannot be an id is not
# a question of authorization), and a backend never sees it.
PARAM_TYPES = {
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
}
_TYPED_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*):([a-z]+)\}")
