"""The public OpenAPI 3.1 document: what the gateway routes, described by the services.

Built once at start from the route table and each upstream's own `openapi.yaml` (the
document that service also validates its requests with), plus the gateway's own
operations. An operation of a service document appears when the route table sends its
method and path to that service's upstream; `/internal/*` never does. The gateway adds
what it answers itself in front of every route: 401 and 403 with their Bearer challenge
and 503 when keys are unavailable on token routes, 429 with Retry-After on rate-limited
routes, 400 for refused paths, 413 for bodies beyond the route's limit, and 502/503/504
when the upstream fails. Served as GET /openapi.json on the public port.

Each service's components are renamed `<upstream>.<Name>` (and every `$ref` with them),
so that `Problem` of one service never shadows another's.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gateway.routes import INTERNAL_PREFIX, RouteConfig, RouteTable

PATH = "/openapi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_COMPONENT_SECTIONS = (
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "links",
    "callbacks",
    "pathItems",
)
# Where the document of each upstream of the packaged routes file lives: package data of
# the same distribution, installed beside the gateway package (in a checkout and in a
# wheel alike). Read as files, so the gateway never imports a service's code.
SERVICE_DOCUMENTS: Mapping[str, str] = MappingProxyType(
    {
        "auth": "services/auth/openapi.yaml",
        "users": "services/users/openapi.yaml",
        "orders": "services/orders/openapi.yaml",
    }
)
_PACKAGES_ROOT = Path(__file__).resolve().parent.parent


def service_documents() -> dict[str, Path]:
    """The packaged openapi.yaml of each service, by upstream name."""
    return {name: _PACKAGES_ROOT / path for name, path in SERVICE_DOCUMENTS.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    upstream: str
    method: str  # lower case, as in OpenAPI
    path: str


def route_for(table: RouteTable, method: str, path: str) -> RouteConfig | None:
    """The route the gateway would use for `method path`, a path template with {params}.

    A template segment `{x}` stands for any value, so it is matched only by a route's
    parameter or final `*`, never by a literal route segment (GET /users/{id} is not
    routed by the /users/me route). Routes are tried in order, like the router.
    """
    method = method.upper()
    for route in table.routes:
        if (method in route.methods or (method == "HEAD" and "GET" in route.methods)) and (
            _matches(route.template, path)
        ):
            return route
    return None


def _matches(route_path: str, template: str) -> bool:
    route_segments = route_path[1:].split("/")
    segments = template[1:].split("/")
    if route_segments[-1] == "*":
        prefix = route_segments[:-1]
        return len(segments) > len(prefix) and all(
            _segment_matches(r, s) for r, s in zip(prefix, segments, strict=False)
        )
    return len(route_segments) == len(segments) and all(
        _segment_matches(r, s) for r, s in zip(route_segments, segments, strict=True)
    )


def _segment_matches(route_segment: str, segment: str) -> bool:
    if route_segment.startswith("{"):
        return True
    return route_segment == segment


def documented_operations(documents: Mapping[str, Mapping[str, Any]]) -> Iterator[Operation]:
    """Every public operation of the service documents (never /internal/*)."""
    for upstream, document in documents.items():
        for path, item in (document.get("paths") or {}).items():
            if path == INTERNAL_PREFIX or path.startswith(INTERNAL_PREFIX + "/"):
                continue
            for method in HTTP_METHODS:
                if method in item:
                    yield Operation(upstream, method, path)


def unrouted(table: RouteTable, documents: Mapping[str, Mapping[str, Any]]) -> list[Operation]:
    """Documented public operations the gateway does not send to their service."""
    missing = []
    for operation in documented_operations(documents):
        route = route_for(table, operation.method, operation.path)
        if route is None or route.upstream != operation.upstream:
            missing.append(operation)
    return missing


def undocumented(
    table: RouteTable, documents: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """(route name, method) pairs that no documented operation of its upstream reaches."""
    reached = set()
    for operation in documented_operations(documents):
        route = route_for(table, operation.method, operation.path)
        if route is not None and route.upstream == operation.upstream:
            reached.add((route.name, operation.method.upper()))
    return [
        (route.name, method)
        for route in table.routes
        for method in route.methods
        if method != "HEAD" and (route.name, method) not in reached
    ]


def load_documents(paths: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    documents = {}
    for name, path in paths.items():
        with path.open(encoding="utf-8") as handle:
            documents[name] = yaml.safe_load(handle)
    return documents


def build_public_document(
    table: RouteTable, documents: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The combined document for the routes of `table` (see the module docstring)."""
    components: dict[str, dict[str, Any]] = {section: {} for section in _COMPONENT_SECTIONS}
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from POST /auth/login, /auth/refresh or /auth/token.",
        }
    }
    components["schemas"].update(_gateway_schemas())
    components["headers"].update(_gateway_headers())
    components["responses"].update(_gateway_responses())
    paths: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, str]] = [{"name": "gateway"}]
    for upstream, source in documents.items():
        if upstream not in table.upstreams:
            continue
        document = _renamed(copy.deepcopy(dict(source)), upstream)
        for section, entries in (document.get("components") or {}).items():
            if section == "securitySchemes":
                for name, scheme in entries.items():
                    components["securitySchemes"].setdefault(name, scheme)
            else:
                components.setdefault(section, {}).update(entries)
        tags.append({"name": upstream, "description": document.get("info", {}).get("title", "")})
        _add_routed_operations(paths, document, table, upstream)
    paths.update(_gateway_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Passgate public API",
            "version": "1.0.0",
            "description": (
                "Everything reachable through the gateway. Operations come from each "
                "service's own document; the gateway adds its own answers (token checks, "
                "rate limits, body limits, upstream failures). Errors are "
                "application/problem+json (RFC 9457)."
            ),
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "/", "description": "this gateway"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {section: entries for section, entries in components.items() if entries},
    }


def _add_routed_operations(
    paths: dict[str, dict[str, Any]], document: dict[str, Any], table: RouteTable, upstream: str
) -> None:
    """Copy into `paths` the operations of `upstream`'s document that the table routes to
    it (never /internal/*), with the gateway's own answers added."""
    for path, item in (document.get("paths") or {}).items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            route = route_for(table, method, path)
            if (
                path == INTERNAL_PREFIX
                or path.startswith(INTERNAL_PREFIX + "/")
                or route is None
                or route.upstream != upstream
            ):
                continue
            operation = item[method]
            operation["tags"] = [upstream, *operation.get("tags", [])]
            _add_gateway_answers(operation, route, method)
            target = paths.setdefault(path, {})
            for key, value in item.items():  # path-level parameters, summary ...
                if key not in HTTP_METHODS:
                    target.setdefault(key, value)
            target[method] = operation


def document_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _renamed(document: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Prefix every component name (security schemes aside) and rewrite refs to match."""
    components = document.get("components") or {}
    for section in _COMPONENT_SECTIONS:
        if section in components:
            components[section] = {f"{prefix}.{k}": v for k, v in components[section].items()}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/"):
                _, _, section, name = ref.split("/", 3)
                if section in _COMPONENT_SECTIONS:
                    node["$ref"] = f"#/components/{section}/{prefix}.{name}"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        return node

    return walk(document)


def _add_gateway_answers(operation: dict[str, Any], route: RouteConfig, method: str) -> None:
    responses = operation.setdefault("responses", {})

    def add(status: str, response: str) -> None:
        if status not in responses:
            responses[status] = {"$ref": f"#/components/responses/{response}"}

    if not route.public:
        operation["security"] = [{"bearer": sorted(route.scopes)}]
        add("401", "gateway.Unauthorized")
        if route.scopes:
            add("403", "gateway.Forbidden")
    if route.rate_limit is not None:
        add("429", "gateway.TooManyRequests")
    add("400", "gateway.Problem")
    if "requestBody" in operation or method in ("post", "put", "patch"):
        add("413", "gateway.Problem")
    add("502", "gateway.Problem")
    add("503", "gateway.Unavailable")
    add("504", "gateway.Problem")


# The gateway's own parts of the document are made fresh by functions, not kept in
# module-level dicts: the built document is handed out and may be changed by whoever holds
# it, which must never reach the next document built.


def _problem_content() -> dict[str, Any]:
    problem = {"$ref": "#/components/schemas/gateway.Problem"}
    return {"application/problem+json": {"schema": problem}}


def _gateway_schemas() -> dict[str, Any]:
    return {
        "gateway.Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; extension members may follow.",
            "required": ["type", "title", "status", "request_id"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "request_id": {"type": "string"},
                "trace_id": {"type": "string"},
                "error": {"type": "string"},
                "reason": {"type": "string"},
                "required_scope": {"type": "string"},
                "retry_after": {"type": "integer", "minimum": 1},
            },
        },
        "gateway.Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "ready"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    }


def _gateway_headers() -> dict[str, Any]:
    return {
        "gateway.WWW-Authenticate": {
            "description": "RFC 6750 section 3 Bearer challenge",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer( |$)"},
        },
        "gateway.Retry-After": {
            "description": "seconds to wait before trying again",
            "required": True,
            "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        },
    }


def _gateway_responses() -> dict[str, Any]:
    return {
        "gateway.Problem": {"description": "an RFC 9457 problem", "content": _problem_content()},
        "gateway.Unauthorized": {
            "description": 'no valid access token (error="invalid_token" when one was presented)',
            "headers": {
                "WWW-Authenticate": {"$ref": "#/components/headers/gateway.WWW-Authenticate"}
            },
            "content": _problem_content(),
        },
        "gateway.Forbidden": {
            "description": 'the token lacks a scope the route needs (error="insufficient_scope")',
            "headers": {
                "WWW-Authenticate": {"$ref": "#/components/headers/gateway.WWW-Authenticate"}
            },
            "content": _problem_content(),
        },
        "gateway.TooManyRequests": {
            "description": "the caller's rate limit for this route is spent",
            "headers": {"Retry-After": {"$ref": "#/components/headers/gateway.Retry-After"}},
            "content": _problem_content(),
        },
        "gateway.Unavailable": {
            "description": "no healthy replica, or the issuer's keys are unavailable",
            "headers": {"Retry-After": {"$ref": "#/components/headers/gateway.Retry-After"}},
            "content": _problem_content(),
        },
    }


def _health_responses() -> dict[str, Any]:
    return {
        "200": {
            "description": "healthy (or ready)",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/gateway.Health"}}
            },
        },
        "503": {"$ref": "#/components/responses/gateway.Problem"},
    }


def _gateway_paths() -> dict[str, Any]:
    return {
        "/healthz": {
            "get": {
                "tags": ["gateway"],
                "operationId": "gatewayHealth",
                "summary": "Liveness of this gateway process",
                "responses": {"200": _health_responses()["200"]},
            }
        },
        "/readyz": {
            "get": {
                "tags": ["gateway"],
                "operationId": "gatewayReadiness",
                "summary": "Readiness: the issuer's keys are loaded and fresh, and not draining",
                "responses": _health_responses(),
            }
        },
        PATH: {
            "get": {
                "tags": ["gateway"],
                "operationId": "publicOpenApiDocument",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "the OpenAPI 3.1 document of everything the gateway routes",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
