"""Read a routes file: its JSON Schema first, then what no schema can say.

The schema (routes.schema.json) checks structure, types, ranges and unknown keys. This
module adds the rest: the path grammar, methods never routed, references between sections
(a route's upstream, PASSGATE_UPSTREAM_<NAME> overrides), the same path and method routed
twice, and fields that only make sense together. Every problem is collected, so one run
shows them all. `load_routes` (what the gateway starts with) also refuses whatever
`lint` calls an error, so a file lint rejects never starts a gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.routes import model, schema
from gateway.routes.lint import ERROR, lint
from gateway.routes.model import RoutesError, RouteTable

_LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=:@-]+$")
_PARAM_SEGMENT = re.compile(r"^\{([a-z_][a-z0-9_]*)(?::(" + "|".join(model.PARAM_TYPES) + r"))?\}$")
_ROUTE_DEFAULT_KEYS = ("timeout", "max_body_bytes", "rate_limit")
_UPSTREAM_TUNING = (
    "eject_after",
    "eject_seconds",
    "connect_timeout",
    "health_interval",
    "discovery",
    "resolve_interval",
)


def load_routes(
    path: Path, scopes: frozenset[str], overrides: Mapping[str, tuple[str, ...]] | None = None
) -> RouteTable:
    """The route table the gateway starts with: read, validated, and refused with every
    problem listed if invalid or if lint finds an error in it. `scopes` are those a token
    can carry (the scopes file's)."""
    return checked(read_routes(path, scopes, overrides))


def checked(table: RouteTable) -> RouteTable:
    """`table`, unless lint finds an error in it (RoutesError listing them)."""
    errors = [message for level, message in lint(table) if level == ERROR]
    if errors:
        raise RoutesError(table.source, errors)
    return table


def read_routes(
    path: Path, scopes: frozenset[str], overrides: Mapping[str, tuple[str, ...]] | None = None
) -> RouteTable:
    """Read and validate the routes file (not linted); raise RoutesError listing every problem."""
    return decode_routes(read_bytes(path), source=str(path), scopes=scopes, overrides=overrides)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RoutesError(str(path), [f"cannot read: {exc.strerror}"]) from None


def decode_routes(
    data: bytes,
    *,
    source: str,
    scopes: frozenset[str],
    overrides: Mapping[str, tuple[str, ...]] | None = None,
) -> RouteTable:
    """Validate a routes file's bytes (not linted); raise RoutesError listing every problem."""
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RoutesError(source, ["not valid YAML: the file is not UTF-8"]) from None
    except yaml.YAMLError as exc:
        raise RoutesError(source, [f"not valid YAML: {exc}"]) from None
    return parse_routes(document, source=source, scopes=scopes, overrides=overrides or {})


def parse_routes(
    document: Any,
    *,
    source: str,
    scopes: frozenset[str],
    overrides: Mapping[str, tuple[str, ...]],
) -> RouteTable:
    """Validate a parsed routes document and build its table; raise RoutesError."""
    if not isinstance(document, dict):
        raise RoutesError(
            source, ["file: must be a mapping with keys defaults, upstreams, routes"]
        )
    if "scopes" in document:
        # The key this file had before the scopes file: say where the list lives now.
        raise RoutesError(
            source, ["scopes: the scopes a token can carry are in the scopes file (PASSGATE_SCOPES_FILE)"]
        )
    problems: list[str] = []
    invalid_routes: set[int] = set()
    malformed_sections = False
    for location, message in schema.problems(document):
        problems.append(f"{_where(document, location)}: {message}")
        if location[:1] == ("routes",) and len(location) > 1:
            invalid_routes.add(location[1])
        else:
            malformed_sections = True
    if malformed_sections:
        # References between sections cannot be checked before the sections are sound;
        # single malformed routes are skipped below, so the others are still checked.
        raise RoutesError(source, problems)
    builder = _Builder(problems, overrides)
    upstreams = builder.upstreams(document["upstreams"])
    issuers = builder.issuers(document.get("issuers") or {})
    builder.issuer_names = {model.DEFAULT_ISSUER, *issuers}
    routes = builder.routes(
        document["routes"], document.get("defaults") or {}, upstreams, invalid_routes
    )
    if problems:
        raise RoutesError(source, problems)
    return RouteTable(source, scopes, upstreams, tuple(routes), issuers=issuers)


def _where(document: dict[str, Any], location: tuple[Any, ...]) -> str:
    """routes[3] (orders-get): rate_limit.requests / upstreams.users: replicas[0] / defaults: timeout."""
    if not location:
        return "file"
    head, rest = location[0], location[1:]
    if head == "routes" and rest and isinstance(rest[0], int):
        name = (
            document["routes"][rest[0]].get("name")
            if isinstance(document["routes"][rest[0]], dict)
            else None
        )
        where, rest = (
            f"routes[{rest[0]}]" + (f" ({name})" if isinstance(name, str) else ""),
            rest[1:],
        )
    elif head in ("upstreams", "issuers") and rest:
        where, rest = f"{head}.{rest[0]}", rest[1:]
    else:
        where = str(head)
    if not rest:
        return where
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest).lstrip(
        "."
    )
    return f"{where}: {field}"


class _Builder:
    """Builds the model from a schema-valid document, adding the problems no schema finds."""

    def __init__(self, problems: list[str], overrides: Mapping[str, tuple[str, ...]]) -> None:
        self.problems = problems
        self.overrides = overrides
        self.issuer_names: set[str] = {model.DEFAULT_ISSUER}

    def issuers(self, specs: Mapping[str, Any]) -> dict[str, model.IssuerConfig]:
        issuers = {}
        for name, spec in specs.items():
            if name == model.DEFAULT_ISSUER:
                self.fail(
                    f"issuers.{name}",
                    "is Passgate's own auth, configured by PASSGATE_ISSUER and PASSGATE_JWKS_URL",
                )
                continue
            issuers[name] = model.IssuerConfig(
                name,
                spec["issuer"],
                spec["jwks_url"],
                spec["audience"],
                tuple(spec.get("algorithms", schema.default("issuer", "algorithms"))),
                leeway=float(spec.get("leeway", schema.default("issuer", "leeway"))),
                max_lifetime=float(spec.get("max_lifetime", schema.default("issuer", "max_lifetime"))),
            )
        return issuers

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def upstreams(self, specs: Mapping[str, Any]) -> dict[str, model.UpstreamConfig]:
        upstreams = {}
        for name, spec in specs.items():
            variable = model.override_variable(name)
            if model.override_key(name) in self.overrides:
                where, replicas = variable, self.overrides[model.override_key(name)]
            elif "replicas" in spec:
                where, replicas = f"upstreams.{name}: replicas", tuple(spec["replicas"])
            else:
                self.fail(f"upstreams.{name}", f"replicas: required unless {variable} is set")
                continue
            for replica in replicas:
                problem = model.replica_problem(replica)
                if problem:
                    self.fail(where, problem)
            tuning = {
                key: spec.get(key, schema.default("upstream", key)) for key in _UPSTREAM_TUNING
            }
            upstreams[name] = model.UpstreamConfig(
                name,
                tuple(r.rstrip("/") for r in replicas),
                eject_after=int(tuning["eject_after"]),
                eject_seconds=float(tuning["eject_seconds"]),
                connect_timeout=float(tuning["connect_timeout"]),
                health_interval=float(tuning["health_interval"]),
                discovery=tuning["discovery"],
                resolve_interval=float(tuning["resolve_interval"]),
            )
        known = {model.override_key(name) for name in specs}
        for key in self.overrides:
            if key not in known:
                self.fail(
                    model.UPSTREAM_ENV_PREFIX + key.upper(),
                    f"names no upstream of the routes file (known: {', '.join(sorted(specs))})",
                )
        return upstreams

    def routes(
        self,
        specs: list[dict[str, Any]],
        defaults: Mapping[str, Any],
        upstreams: Mapping[str, model.UpstreamConfig],
        invalid: set[int],
    ) -> list[model.RouteConfig]:
        routes: list[model.RouteConfig] = []
        names: set[str] = set()
        seen: dict[tuple[str, str], str] = {}
        for index, spec in enumerate(specs):
            if index in invalid:
                continue
            where = f"routes[{index}] ({spec['name']})"
            route = self.route(where, spec, defaults, upstreams)
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

    def route(
        self,
        where: str,
        spec: Mapping[str, Any],
        defaults: Mapping[str, Any],
        upstreams: Mapping[str, model.UpstreamConfig],
    ) -> model.RouteConfig | None:
        problems_before = len(self.problems)
        self.path(where, spec["path"])
        methods = self.methods(where, spec["methods"])
        if spec["upstream"] not in upstreams:
            self.fail(
                where,
                f"upstream: {spec['upstream']!r} is not defined under upstreams "
                f"(known: {', '.join(sorted(upstreams)) or 'none'})",
            )
        public = spec.get("auth", schema.default("route", "auth")) == model.PUBLIC
        scopes = spec.get("scopes", schema.default("route", "scopes"))
        mode, listed = next(iter(scopes.items())) if isinstance(scopes, dict) else ("all", scopes)
        if public and listed:
            self.fail(where, "scopes: a public route takes no token, so it cannot require scopes")
        forward_basic = spec.get(
            "forward_basic_auth", schema.default("route", "forward_basic_auth")
        )
        if forward_basic and not public:
            self.fail(
                where, "forward_basic_auth: only a public route may pass HTTP Basic credentials"
            )
        settings = {
            key: spec[key] if key in spec else defaults.get(key, schema.default("route", key))
            for key in _ROUTE_DEFAULT_KEYS
        }
        issuers = self.route_issuers(where, spec, public)
        websocket = self.websocket(where, spec, methods, public, issuers)
        claims = self.claims_to_headers(where, spec, public)
        cors = self.cors(where, spec.get("cors"), methods)
        if len(self.problems) > problems_before:
            return None
        return model.RouteConfig(
            name=spec["name"],
            path=spec["path"],
            methods=methods,
            upstream=spec["upstream"],
            public=public,
            scopes=frozenset(listed),
            scope_mode=mode,
            timeout=float(settings["timeout"]),
            max_body_bytes=int(settings["max_body_bytes"]),
            rate_limit=_rate_limit(settings["rate_limit"]),
            forward_basic_auth=forward_basic,
            websocket=websocket,
            issuers=issuers,
            claims_to_headers=claims,
            cors=cors,
        )

    def websocket(
        self,
        where: str,
        spec: Mapping[str, Any],
        methods: tuple[str, ...],
        public: bool,
        issuers: tuple[str, ...],
    ) -> bool:
        websocket = bool(spec.get("websocket", schema.default("route", "websocket")))
        if websocket and "GET" not in methods:
            self.fail(where, "websocket: a WebSocket handshake is a GET (RFC 6455 4.1); list GET")
        if websocket and public:
            self.fail(
                where, "websocket: a socket lives as long as its token; a public route has none"
            )
        elif websocket and issuers != (model.DEFAULT_ISSUER,):
            # The relay ends a socket when its token's key leaves Passgate's key set.
            self.fail(where, "websocket: a WebSocket route accepts Passgate's own tokens only")
        return websocket

    def route_issuers(self, where: str, spec: Mapping[str, Any], public: bool) -> tuple[str, ...]:
        if "issuers" not in spec:
            return () if public else tuple(schema.default("route", "issuers"))
        names = tuple(dict.fromkeys(spec["issuers"]))
        if public:
            self.fail(where, "issuers: a public route takes no token, so it trusts no issuer")
        for name in names:
            if name not in self.issuer_names:
                known = ", ".join(sorted(self.issuer_names))
                self.fail(where, f"issuers: {name!r} is not declared under issuers (known: {known})")
        return names

    def claims_to_headers(
        self, where: str, spec: Mapping[str, Any], public: bool
    ) -> tuple[tuple[str, str], ...]:
        mapping = spec.get("claims_to_headers", schema.default("route", "claims_to_headers"))
        if mapping and public:
            self.fail(where, "claims_to_headers: a public route has no token to take claims from")
        seen: dict[str, str] = {}
        for claim, header in mapping.items():
            lowered = header.lower()
            if lowered in model.RESERVED_IDENTITY_HEADERS:
                self.fail(where, f"claims_to_headers: {header} is set by the gateway itself")
            elif lowered in seen:
                self.fail(
                    where, f"claims_to_headers: {header} is named for {seen[lowered]!r} and {claim!r}"
                )
            seen[lowered] = claim
        return tuple(mapping.items())

    def cors(
        self, where: str, spec: Mapping[str, Any] | None, methods: tuple[str, ...]
    ) -> model.RouteCors | None:
        """The route's narrowing; whether its origins are within the global list is checked
        where that list is known (gateway.route_cors)."""
        if spec is None:
            return None
        narrowed = spec.get("methods")
        if narrowed is not None:
            narrowed = tuple(method.upper() for method in narrowed)
            outside = sorted(set(narrowed) - set(methods))
            if outside:
                self.fail(where, f"cors.methods: {', '.join(outside)} not among the route's methods")
        origins, exposed = spec.get("origins"), spec.get("expose_headers")
        return model.RouteCors(
            tuple(origins) if origins is not None else None,
            narrowed,
            tuple(exposed) if exposed is not None else None,
        )

    def path(self, where: str, path: str) -> None:
        if not path.startswith("/") or path == "/":
            self.fail(where, f"path: {path!r} must start with '/' and name at least one segment")
            return
        if path == model.INTERNAL_PREFIX or path.startswith(model.INTERNAL_PREFIX + "/"):
            self.fail(
                where, f"path: {path!r}: {model.INTERNAL_PREFIX}/* is never routed by the gateway"
            )
        if any(path == p or path.startswith(p + "/") for p in model.RESERVED_PATHS):
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
                    f"a typed {{param:type}} ({', '.join(model.PARAM_TYPES)}), "
                    "or a final '*' after a literal prefix",
                )

    def methods(self, where: str, listed: list[str]) -> tuple[str, ...]:
        methods: list[str] = []
        for method in listed:
            upper = method.upper()
            if upper in model.REFUSED_METHODS:
                self.fail(where, f"methods: {model.REFUSED_METHODS[upper]}")
            elif upper not in model.ROUTABLE_METHODS:
                self.fail(
                    where, f"methods: {method!r} is not one of {', '.join(model.ROUTABLE_METHODS)}"
                )
            elif upper not in methods:
                methods.append(upper)
        # A GET route answers HEAD too (RFC 9110 section 9.3.2), like aiohttp's add_get.
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")
        return tuple(methods)


def _rate_limit(value: Any) -> model.RateLimit | None:
    """The schema admits a token bucket mapping, or null, false or "off" for none."""
    if not isinstance(value, dict):
        return None
    requests = value["requests"]
    return model.RateLimit(
        requests=int(requests),
        per=float(value.get("per", schema.default("tokenBucket", "per"))),
        burst=int(value.get("burst", requests)),  # the schema's stated default: requests
    )


def _shape(path: str) -> str:
    """The path with parameter names erased, so /a/{x} and /a/{y} count as one."""
    return re.sub(r"\{[^}]*\}", "{}", path)
