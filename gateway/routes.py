"""The declarative route table: load and validate routes.yaml at start, and lint it.

A route says which paths and methods reach which upstream pool, whether a token is needed
and with which scopes, and its timeout, body-size limit and rate limit. Everything is
checked once at load, with messages naming the file, the route and the field; nothing
here runs per request.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

PUBLIC = "public"
TOKEN = "token"
ROUTABLE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Never routed: TRACE echoes requests (and their credentials) back, CONNECT opens tunnels,
# and OPTIONS is the CORS preflight, answered by the gateway itself without a token.
REFUSED_METHODS = {"TRACE": "TRACE is never routed", "CONNECT": "CONNECT is never routed",
                   "OPTIONS": "OPTIONS is answered by the gateway (CORS preflight)"}
RESERVED_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")
# Internal backend endpoints (profile provisioning ...) are reachable only inside the mesh.
INTERNAL_PREFIX = "/internal"

_LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=:@-]+$")
_PARAM_SEGMENT = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

_TOP_KEYS = {"scopes", "defaults", "upstreams", "routes"}
_DEFAULT_KEYS = {"timeout", "max_body_bytes", "rate_limit"}
_UPSTREAM_KEYS = {"replicas", "eject_after", "eject_seconds", "connect_timeout", "health_interval",
                  "discovery", "resolve_interval"}
_ROUTE_KEYS = {"name", "path", "methods", "upstream", "auth", "scopes"} | _DEFAULT_KEYS | {
    "forward_basic_auth"
}
_RATE_KEYS = {"requests", "per", "burst"}


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

    @property
    def rate(self) -> float:
        return self.requests / self.per

    @property
    def interval(self) -> float:
        """Seconds per token: the GCRA emission interval."""
        return self.per / self.requests


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    replicas: tuple[str, ...]
    eject_after: int = 3
    eject_seconds: float = 10.0
    connect_timeout: float = 2.0
    # Seconds between readiness probes (GET /readyz) of each replica.
    health_interval: float = 2.0
    # static: the replicas are the URLs; dns: every address of each URL's host is a
    # replica (a headless Service), resolved again every resolve_interval seconds.
    discovery: str = "static"
    resolve_interval: float = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    path: str
    methods: tuple[str, ...]
    upstream: str
    public: bool
    scopes: frozenset[str] = frozenset()
    scope_mode: str = "all"  # all: every listed scope; any: at least one
    timeout: float = 10.0
    max_body_bytes: int = 65536
    rate_limit: RateLimit | None = None
    forward_basic_auth: bool = False

    @property
    def router_path(self) -> str:
        """The aiohttp path pattern: `{id}` is one segment, a final `*` any remainder."""
        if self.path.endswith("/*"):
            return self.path[:-1] + "{tail:.+}"
        return self.path

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


def load_routes(
    path: Path, overrides: Mapping[str, tuple[str, ...]] | None = None
) -> RouteTable:
    """Read and validate the routes file; raise RoutesError listing every problem."""
    source = str(path)
    try:
        with path.open(encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise RoutesError(source, [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise RoutesError(source, [f"not valid YAML: {exc}"]) from None
    return parse_routes(document, source=source, overrides=overrides or {})


def parse_routes(
    document: Any, *, source: str, overrides: Mapping[str, tuple[str, ...]]
) -> RouteTable:
    parser = _Parser()
    table = parser.table(document, source, overrides)
    if parser.problems:
        raise RoutesError(source, parser.problems)
    assert table is not None
    return table


class _Parser:
    """Collects every problem instead of stopping at the first, so one run shows them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def table(
        self, document: Any, source: str, overrides: Mapping[str, tuple[str, ...]]
    ) -> RouteTable | None:
        if not isinstance(document, dict):
            self.fail("file", "must be a mapping with keys scopes, defaults, upstreams, routes")
            return None
        self._unknown_keys("file", document, _TOP_KEYS)
        scopes = self._string_list("scopes", document.get("scopes"), required=True)
        defaults = document.get("defaults") or {}
        if not isinstance(defaults, dict):
            self.fail("defaults", "must be a mapping")
            defaults = {}
        self._unknown_keys("defaults", defaults, _DEFAULT_KEYS)
        upstreams = self._upstreams(document.get("upstreams"), overrides)
        routes = self._routes(document.get("routes"), defaults, upstreams)
        return RouteTable(source, frozenset(scopes), upstreams, tuple(routes))

    def _unknown_keys(self, where: str, mapping: Mapping[str, Any], known: set[str]) -> None:
        unknown = sorted(str(key) for key in mapping if key not in known)
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")

    def _string_list(self, where: str, value: Any, *, required: bool = False) -> list[str]:
        if value is None and not required:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(where, "must be a list of non-empty strings")
            return []
        return value

    def _number(
        self, where: str, value: Any, *, minimum: float, maximum: float, integer: bool = False
    ) -> float | None:
        valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not valid_type or not minimum <= value <= maximum:
            kind = "an integer" if integer else "a number"
            self.fail(where, f"must be {kind} from {minimum:g} to {maximum:g}, got {value!r}")
            return None
        return value

    def _upstreams(
        self, value: Any, overrides: Mapping[str, tuple[str, ...]]
    ) -> dict[str, UpstreamConfig]:
        if not isinstance(value, dict) or not value:
            self.fail("upstreams", "must be a non-empty mapping of name -> {replicas: [...]}")
            return {}
        upstreams = {}
        for name, spec in value.items():
            where = f"upstreams.{name}"
            if not isinstance(name, str) or not _NAME.match(name):
                self.fail(where, "a name is lowercase letters, digits, '-' and '_'")
                continue
            if not isinstance(spec, dict):
                self.fail(where, "must be a mapping with replicas")
                continue
            self._unknown_keys(where, spec, _UPSTREAM_KEYS)
            replicas = overrides.get(name) or self._string_list(
                f"{where}.replicas", spec.get("replicas"), required=True
            )
            for replica in replicas:
                self._replica(f"{where}.replicas", replica)
            config = UpstreamConfig(name, tuple(r.rstrip("/") for r in replicas))
            for key, maximum, integer in (
                ("eject_after", 100, True),
                ("eject_seconds", 3600, False),
                ("connect_timeout", 60, False),
                ("health_interval", 300, False),
                ("resolve_interval", 300, False),
            ):
                if key in spec:
                    number = self._number(
                        f"{where}.{key}", spec[key], minimum=1 if integer else 0.01,
                        maximum=maximum, integer=integer,
                    )
                    if number is not None:
                        config = dataclasses.replace(config, **{key: number})
            discovery = spec.get("discovery", "static")
            if discovery not in ("static", "dns"):
                self.fail(f"{where}.discovery", "must be static or dns")
            else:
                config = dataclasses.replace(config, discovery=discovery)
            upstreams[name] = config
        for name in overrides:
            if name not in upstreams:
                self.fail(
                    f"PASSGATE_UPSTREAM_{name.upper()}",
                    f"names no upstream of the routes file (known: {', '.join(sorted(upstreams))})",
                )
        return upstreams

    def _replica(self, where: str, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(where, f"{url!r} must be an http:// or https:// base URL")
        elif parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            self.fail(where, f"{url!r} must be scheme://host:port only (no path, query or user)")

    def _routes(
        self, value: Any, defaults: Mapping[str, Any], upstreams: Mapping[str, UpstreamConfig]
    ) -> list[RouteConfig]:
        if not isinstance(value, list) or not value:
            self.fail("routes", "must be a non-empty list")
            return []
        routes: list[RouteConfig] = []
        names: set[str] = set()
        seen: dict[tuple[str, str], str] = {}
        for index, spec in enumerate(value):
            where = f"routes[{index}]"
            if not isinstance(spec, dict):
                self.fail(where, "must be a mapping")
                continue
            if isinstance(spec.get("name"), str):
                where = f"routes[{index}] ({spec['name']})"
            route = self._route(where, spec, defaults, upstreams)
            if route is None:
                continue
            if route.name in names:
                self.fail(where, f"name {route.name!r} is used twice")
            names.add(route.name)
            for method in route.methods:
                key = (_shape(route.path), method)
                if key in seen:
                    self.fail(where, f"{method} {route.path} is already routed by {seen[key]!r}")
                seen[key] = route.name
            routes.append(route)
        return routes

    def _route(
        self,
        where: str,
        spec: Mapping[str, Any],
        defaults: Mapping[str, Any],
        upstreams: Mapping[str, UpstreamConfig],
    ) -> RouteConfig | None:
        problems_before = len(self.problems)
        self._unknown_keys(where, spec, _ROUTE_KEYS)
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            self.fail(where, "name: lowercase letters, digits, '-' and '_', starting with a letter")
        path = spec.get("path")
        if not isinstance(path, str):
            self.fail(where, "path: required, e.g. /orders/{id} or /auth/*")
        else:
            self._path(where, path)
        methods = self._methods(where, spec.get("methods"))
        upstream = spec.get("upstream")
        if upstream not in upstreams:
            self.fail(
                where,
                f"upstream: {upstream!r} is not defined under upstreams "
                f"(known: {', '.join(sorted(upstreams)) or 'none'})",
            )
        auth = spec.get("auth", TOKEN)
        if auth not in (PUBLIC, TOKEN):
            self.fail(where, f"auth: must be {PUBLIC!r} or {TOKEN!r}, got {auth!r}")
        scopes, mode = self._scopes(where, spec.get("scopes"))
        if auth == PUBLIC and scopes:
            self.fail(where, "scopes: a public route takes no token, so it cannot require scopes")
        forward_basic = spec.get("forward_basic_auth", False)
        if not isinstance(forward_basic, bool):
            self.fail(where, "forward_basic_auth: must be true or false")
        elif forward_basic and auth != PUBLIC:
            self.fail(where, "forward_basic_auth: only a public route may pass HTTP Basic credentials")
        merged = {**defaults, **{k: spec[k] for k in _DEFAULT_KEYS if k in spec}}
        timeout = self._number(
            f"{where}.timeout", merged.get("timeout", 10.0), minimum=0.01, maximum=600
        )
        max_body = self._number(
            f"{where}.max_body_bytes", merged.get("max_body_bytes", 65536),
            minimum=0, maximum=1 << 30, integer=True,
        )
        rate_limit = self._rate_limit(f"{where}.rate_limit", merged.get("rate_limit"))
        if len(self.problems) > problems_before:
            return None
        return RouteConfig(
            name=name,
            path=path,
            methods=methods,
            upstream=upstream,
            public=auth == PUBLIC,
            scopes=frozenset(scopes),
            scope_mode=mode,
            timeout=float(timeout),
            max_body_bytes=int(max_body),
            rate_limit=rate_limit,
            forward_basic_auth=forward_basic,
        )

    def _path(self, where: str, path: str) -> None:
        if not path.startswith("/") or path == "/":
            self.fail(where, f"path: {path!r} must start with '/' and name at least one segment")
            return
        if path == INTERNAL_PREFIX or path.startswith(INTERNAL_PREFIX + "/"):
            self.fail(where, f"path: {path!r}: {INTERNAL_PREFIX}/* is never routed by the gateway")
        if any(path == p or path.startswith(p + "/") for p in RESERVED_PATHS):
            self.fail(where, f"path: {path!r} is reserved for the gateway itself")
        segments = path[1:].split("/")
        for position, segment in enumerate(segments):
            last = position == len(segments) - 1
            if segment == "*" and last and position > 0:
                continue
            if segment in (".", "..") or not (
                _LITERAL_SEGMENT.match(segment) or _PARAM_SEGMENT.match(segment)
            ):
                self.fail(
                    where,
                    f"path: segment {segment!r} of {path!r} must be a literal, a {{param}}, "
                    "or a final '*' after a literal prefix",
                )

    def _methods(self, where: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail(where, f"methods: a non-empty list of {', '.join(ROUTABLE_METHODS)}")
            return ()
        methods: list[str] = []
        for method in value:
            upper = str(method).upper()
            if upper in REFUSED_METHODS:
                self.fail(where, f"methods: {REFUSED_METHODS[upper]}")
            elif upper not in ROUTABLE_METHODS:
                self.fail(where, f"methods: {method!r} is not one of {', '.join(ROUTABLE_METHODS)}")
            elif upper not in methods:
                methods.append(upper)
        # A GET route answers HEAD too (RFC 9110 section 9.3.2), like aiohttp's add_get.
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")
        return tuple(methods)

    def _scopes(self, where: str, value: Any) -> tuple[list[str], str]:
        if value is None:
            return [], "all"
        if isinstance(value, list):
            return self._string_list(f"{where}.scopes", value), "all"
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("all", "any"):
            mode = next(iter(value))
            return self._string_list(f"{where}.scopes.{mode}", value[mode]), mode
        self.fail(where, "scopes: a list (all required), or {all: [...]} or {any: [...]}")
        return [], "all"

    def _rate_limit(self, where: str, value: Any) -> RateLimit | None:
        if value is None or value is False or value == "off":
            return None
        if not isinstance(value, dict):
            self.fail(where, "must be {requests: N, per: seconds, burst: N} or off")
            return None
        self._unknown_keys(where, value, _RATE_KEYS)
        requests = self._number(f"{where}.requests", value.get("requests"), minimum=1,
                                maximum=1e9, integer=True)
        per = self._number(f"{where}.per", value.get("per", 1), minimum=0.001, maximum=86400)
        burst = self._number(f"{where}.burst", value.get("burst", requests or 1), minimum=1,
                             maximum=1e9, integer=True)
        if requests is None or per is None or burst is None:
            return None
        return RateLimit(int(requests), float(per), int(burst))


def _shape(path: str) -> str:
    """The path with parameter names erased, so /a/{x} and /a/{y} count as one."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def lint(
    table: RouteTable, *, cors_origins: Iterable[str] = (), cors_allow_credentials: bool = False
) -> list[tuple[str, str]]:
    """Findings as (level, message): 'error' must be fixed, 'note' deserves a look."""
    findings: list[tuple[str, str]] = []
    for route in table.routes:
        methods = ", ".join(m for m in route.methods if m != "HEAD" or "GET" not in route.methods)
        if route.public:
            findings.append(("note", f"route {route.name!r} ({methods} {route.path}) needs no token"))
            if route.forward_basic_auth:
                findings.append(
                    ("note", f"route {route.name!r} passes HTTP Basic credentials to {route.upstream!r}")
                )
        elif not route.scopes:
            findings.append(("note", f"route {route.name!r} accepts any valid token (no scope)"))
        unknown = sorted(route.scopes - table.issuable_scopes)
        if unknown:
            findings.append(
                ("error", f"route {route.name!r} requires {', '.join(unknown)}, "
                          "which no issued token can carry (see scopes:)")
            )
        if route.rate_limit is None:
            findings.append(("note", f"route {route.name!r} has no rate limit"))
    used = {route.upstream for route in table.routes}
    for name in sorted(set(table.upstreams) - used):
        findings.append(("note", f"upstream {name!r} is defined but no route uses it"))
    for origin in cors_origins:
        if origin == "*" and cors_allow_credentials:
            findings.append(
                ("error", "CORS: PASSGATE_CORS_ORIGINS='*' with PASSGATE_CORS_ALLOW_CREDENTIALS "
                          "would let every site act with the user's credentials")
            )
    return findings
