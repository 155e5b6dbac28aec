"""The OpenAPI documents against the route table, the services' routers and API.md.

- Route table: every documented public operation is routed by the gateway to the service
  that documents it, and every routed (route, method) is reached by a documented one.
- Routers: every service route is documented in that service's openapi.yaml and back.
- API.md: every operation it lists is in the gateway's public document, with each status
  code it names, and with the scope it names as the bearer scope.
- Shape: request bodies are closed (additionalProperties false); every 401 documents its
  WWW-Authenticate challenge and every 429 its Retry-After, in every document.
- Served: GET /openapi.json on the gateway's public port is that document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devstack.stack import ROOT
from gateway.openapi import (
    HTTP_METHODS,
    build_public_document,
    load_documents,
    route_for,
    undocumented,
    unrouted,
)
from gateway.openapi import service_documents as service_document_paths
from common.scopes import default_scope_policy
from gateway.routes import RESERVED_PATHS, RouteTable, load_routes
from gateway.settings import DEFAULT_ROUTES_FILE
from services.auth.routes import setup_routes as auth_routes
from services.orders.routes import setup_routes as orders_routes
from services.users.routes import setup_routes as users_routes
from tests.support.hostile import Client

API_MD = ROOT.parent / "shared" / "API.md"
ROUTERS: dict[str, Callable[[web.Application], None]] = {
    "auth": auth_routes,
    "users": users_routes,
    "orders": orders_routes,
}


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return load_documents(service_document_paths())


@pytest.fixture(scope="module")
def public(documents) -> dict[str, Any]:
    return build_public_document(packaged_routes(), documents)


def packaged_routes() -> RouteTable:
    return load_routes(DEFAULT_ROUTES_FILE, default_scope_policy().issuable)


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow local $refs until a real object."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method, path, item[method]


# -- the route table ------------------------------------------------------------------------


def test_every_documented_operation_is_routed_to_its_service(documents) -> None:
    table = packaged_routes()
    missing = unrouted(table, documents)
    assert missing == [], f"documented but not routed by gateway/routes.yaml: {missing}"


def test_every_routed_path_is_documented(documents) -> None:
    table = packaged_routes()
    missing = undocumented(table, documents)
    assert missing == [], f"routed by gateway/routes.yaml but documented by no service: {missing}"


def test_the_public_document_holds_exactly_the_routed_operations(public) -> None:
    table = packaged_routes()
    for method, path, operation in operations(public):
        if path in RESERVED_PATHS:
            assert operation["tags"] == ["gateway"]
            continue
        route = route_for(table, method, path)
        assert route is not None, f"{method.upper()} {path} is documented but not routed"
        assert operation["tags"][0] == route.upstream
        expected = None if route.public else [{"bearer": sorted(route.scopes)}]
        assert operation.get("security") == expected or route.public
    assert not any(path.startswith("/internal") for path in public["paths"])
    assert "/metrics" not in public["paths"]


# -- the services' own routers ------------------------------------------------------------------


@pytest.mark.parametrize("service", list(ROUTERS))
def test_each_service_documents_exactly_what_it_routes(service: str, documents) -> None:
    app = web.Application()
    ROUTERS[service](app)
    routed = {
        (route.method.lower(), resource.canonical)
        for resource in app.router.resources()
        for route in resource
        if route.method != "HEAD"
    }
    documented = {(method, path) for method, path, _ in operations(documents[service])}
    assert routed - documented == set(), f"{service}: routed but undocumented"
    assert documented - routed == set(), f"{service}: documented but not routed"


# -- API.md ------------------------------------------------------------------------------------


def _api_md_rows() -> list[tuple[str, str, str, str]]:
    """(method, path, scope column or '', the rest of the row) for each API.md table row."""
    if not API_MD.exists():
        pytest.skip(f"{API_MD} is not here (shared/ lies beside the repository)")
    rows = []
    for line in API_MD.read_text().splitlines():
        match = re.match(r"^\| (GET|POST|PUT|PATCH|DELETE) (/\S+) \|(.*)$", line)
        if match:
            cells = [cell.strip() for cell in match.group(3).split("|")]
            scope = cells[0] if re.fullmatch(r"[a-z]+(:[a-z]+)?", cells[0] or "-") else ""
            # The last two columns are success and failures (the others hold sizes, bounds).
            rows.append((match.group(1).lower(), match.group(2), scope, " ".join(cells[-3:-1])))
    assert len(rows) >= 15, "API.md's tables were not found"
    return rows


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_api_md_operation_and_status_is_in_the_public_document(public) -> None:
    by_shape = {(method, _shape(path)): operation for method, path, operation in operations(public)}
    problems = []
    for method, path, scope, rest in _api_md_rows():
        operation = by_shape.get((method, _shape(path)))
        if operation is None:
            problems.append(f"{method.upper()} {path}: not in the public document")
            continue
        for status in sorted(set(re.findall(r"\b([2-5][0-9]{2})\b", rest))):
            if status not in operation["responses"]:
                problems.append(f"{method.upper()} {path}: status {status} is not documented")
        if scope:
            granted = [scope_ for requirement in operation.get("security", []) for scope_ in
                       requirement.get("bearer", [])]
            if scope not in granted:
                problems.append(f"{method.upper()} {path}: API.md's scope {scope} is not its bearer scope")
    assert problems == []


# -- shapes every document keeps -------------------------------------------------------------------


def _all_documents(documents, public) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from documents.items()
    yield "public", public


def test_request_bodies_are_closed(documents, public) -> None:
    for name, document in _all_documents(documents, public):
        for method, path, operation in operations(document):
            body = resolve(document, operation.get("requestBody"))
            for media, content in (body or {}).get("content", {}).items():
                schema = resolve(document, content["schema"])
                assert schema.get("additionalProperties") is False, (name, method, path, media)


def test_401_and_429_answers_document_their_headers(documents, public) -> None:
    for name, document in _all_documents(documents, public):
        for method, path, operation in operations(document):
            for status, header in (("401", "WWW-Authenticate"), ("429", "Retry-After")):
                response = resolve(document, operation["responses"].get(status))
                if response is not None:
                    assert header in response.get("headers", {}), (name, method, path, status)


def test_token_routes_document_the_gateways_own_answers(public) -> None:
    for method, path, operation in operations(public):
        if operation.get("security", [{}])[0].get("bearer") is not None:
            assert {"401", "503"} <= set(operation["responses"]), (method, path)
            if operation["security"][0]["bearer"]:
                assert "403" in operation["responses"], (method, path)
        if "requestBody" in operation:
            assert "413" in operation["responses"], (method, path)


@pytest.mark.e2e
def test_the_gateway_serves_the_document(gateway: Client, public) -> None:
    reply = gateway.get("/openapi.json")
    assert reply.status == 200 and reply.content_type == "application/json"
    served = reply.json()
    assert served["openapi"].startswith("3.1")
    assert set(served["paths"]) == set(public["paths"])
    # The admin port keeps /metrics; the public port documents and serves none.
    assert "/metrics" not in served["paths"] and gateway.get("/metrics").status == 404


def test_the_document_path_is_reserved() -> None:
    assert "/openapi.json" in RESERVED_PATHS
    assert Path(DEFAULT_ROUTES_FILE).exists()


def test_a_built_document_shares_nothing_with_the_next(documents) -> None:
    """Whoever changes a built document (deep inside it) changes no later document."""
    table = packaged_routes()
    first = build_public_document(table, documents)
    pristine = json.dumps(build_public_document(table, documents), sort_keys=True)

    def scribble(node: Any) -> None:
        if isinstance(node, dict):
            for value in list(node.values()):
                scribble(value)
            node["x-scribbled"] = True
        elif isinstance(node, list):
            for value in node:
                scribble(value)
            node.append("scribbled")

    scribble(first)
    assert json.dumps(build_public_document(table, documents), sort_keys=True) == pristine


def test_the_service_documents_are_read_without_importing_the_services() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from gateway.openapi import load_documents, service_documents; "
        "load_documents(service_documents()); "
        "print(sorted(m for m in sys.modules if m.startswith('services')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
