"""The routes file: validated at load with clear messages, and linted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.settings import SettingsError
from common.scopes import default_scope_policy
from gateway.routes import RoutesError, lint, load_routes, parse_routes, read_routes

PROJECT = Path(__file__).resolve().parents[2]
ISSUABLE = frozenset({"orders:read"})
BASE = {
    "upstreams": {"orders": {"replicas": ["http://127.0.0.1:8083"]}},
}


def parse(*routes: dict, **top) -> object:
    return parse_routes({**BASE, **top, "routes": list(routes)}, source="test.yaml", scopes=ISSUABLE, overrides={})


def route(**fields) -> dict:
    return {"name": "orders", "path": "/orders", "methods": ["GET"], "upstream": "orders", **fields}


def test_packaged_routes_file_loads() -> None:
    table = load_routes(PROJECT / "gateway" / "routes.yaml", default_scope_policy().issuable)
    names = {r.name for r in table.routes}
    assert {"auth", "well-known", "users-me-read", "orders-cancel"} <= names
    assert not [f for f in lint(table) if f[0] == "error"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"methods": ["GET", "TRACE"]}, "TRACE is never routed"),
        ({"methods": ["OPTIONS"]}, "CORS preflight"),
        ({"methods": ["BREW"]}, "'BREW' is not one of"),
        ({"path": "/internal/profiles/{id}"}, "/internal/* is never routed"),
        ({"path": "/metrics"}, "reserved"),
        ({"path": "/orders/../x"}, "segment '..'"),
        ({"path": "/orders/{id:.*}"}, "segment"),
        ({"path": "/*"}, "segment '*'"),
        ({"upstream": "payments"}, "'payments' is not defined under upstreams"),
        ({"auth": "public", "scopes": ["orders:read"]}, "cannot require scopes"),
        ({"auth": "maybe"}, "auth: must be"),
        ({"timeout": 0}, "timeout: must be a number"),
        ({"max_body_bytes": -1}, "max_body_bytes"),
        ({"rate_limit": {"requests": 0}}, "rate_limit.requests"),
        ({"forward_basic_auth": True}, "only a public route"),
        ({"colour": "blue"}, "unknown key(s) colour"),
    ],
)
def test_invalid_route_is_refused_with_a_clear_message(fields: dict, message: str) -> None:
    with pytest.raises(RoutesError) as error:
        parse(route(**fields))
    assert message in str(error.value)
    assert "test.yaml: routes[0] (orders)" in str(error.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RoutesError) as error:
        parse(route(methods=["TRACE"]), route(name="b", upstream="nope"))
    assert len(error.value.problems) == 2


def test_duplicate_method_and_path_is_refused() -> None:
    with pytest.raises(RoutesError, match="already routed by 'orders'"):
        parse(route(), route(name="again", path="/orders"))


def test_replica_urls_are_checked_and_overridable() -> None:
    with pytest.raises(RoutesError, match="no path, query or user"):
        parse_routes({**BASE, "upstreams": {"orders": {"replicas": ["http://h:1/api"]}},
                      "routes": [route()]}, source="t", scopes=ISSUABLE, overrides={})
    table = parse_routes({**BASE, "routes": [route()]}, source="t",
                         scopes=ISSUABLE, overrides={"orders": ("http://10.0.0.1:80", "http://10.0.0.2:80/")})
    assert table.upstreams["orders"].replicas == ("http://10.0.0.1:80", "http://10.0.0.2:80")
    with pytest.raises(RoutesError, match="PASSGATE_UPSTREAM_PAYMENTS: names no upstream"):
        parse_routes({**BASE, "routes": [route()]}, source="t", scopes=ISSUABLE, overrides={"payments": ("http://x:1",)})


def test_lint_reports_unissuable_scopes_and_public_routes() -> None:
    table = parse(route(scopes=["orders:delete"]), route(name="pub", path="/p/*", auth="public"))
    findings = lint(table, cors_origins=("*",), cors_allow_credentials=True)
    errors = [m for level, m in findings if level == "error"]
    notes = [m for level, m in findings if level == "note"]
    assert any("orders:delete" in m and "no token can carry" in m for m in errors)
    assert any("CORS" in m for m in errors)
    assert any("'pub'" in m and "needs no token" in m for m in notes)


def _lint(tmp_path: Path, document: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(document))
    return subprocess.run(
        [sys.executable, "-m", "gateway", "lint", str(path)],
        cwd=PROJECT, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_lint_command_passes_a_good_file(tmp_path: Path) -> None:
    good = _lint(tmp_path, {**BASE, "routes": [route(scopes=["orders:read"])]})
    assert good.returncode == 0, good.stdout + good.stderr
    assert "0 error(s)" in good.stdout


def test_lint_command_fails_on_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    from gateway.__main__ import main

    for name in ("PASSGATE_CORS_ORIGINS", "PASSGATE_CORS_ALLOW_CREDENTIALS", "PASSGATE_ROUTES_FILE"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "routes": [route(name="x", upstream="y")]}))
    assert main(["lint", str(path)]) == 1
    assert "'y' is not defined under upstreams" in capsys.readouterr().out
    path.write_text(yaml.safe_dump({**BASE, "routes": [route(scopes=["nope"])]}))
    monkeypatch.setenv("PASSGATE_CORS_ORIGINS", "*")
    monkeypatch.setenv("PASSGATE_CORS_ALLOW_CREDENTIALS", "true")
    assert main(["lint", str(path)]) == 1
    out = capsys.readouterr().out
    assert "no token can carry" in out and "PASSGATE_CORS_ORIGINS='*'" in out


# -- lint and start agree (one validation path) ------------------------------------------


def _write(tmp_path: Path, document: dict, name: str = "routes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    required=st.lists(st.lists(st.sampled_from(["orders:read", "orders:write", "admin", "nope", "x:y"]),
                               max_size=3), min_size=1, max_size=4),
    issuable=st.lists(st.sampled_from(["orders:read", "orders:write", "admin"]), max_size=3),
)
def test_start_refuses_exactly_what_lint_calls_an_error(tmp_path: Path, required: list, issuable: list) -> None:
    routes = [route(name=f"r{i}", path=f"/r{i}", scopes=scopes) for i, scopes in enumerate(required)]
    path = _write(tmp_path, {**BASE, "routes": routes})
    errors = [m for level, m in lint(read_routes(path, frozenset(issuable))) if level == "error"]
    try:
        load_routes(path, frozenset(issuable))
    except RoutesError as refused:
        assert refused.problems == errors
    else:
        assert errors == []


def test_a_gateway_process_does_not_start_with_a_scope_no_token_can_carry(tmp_path: Path) -> None:
    path = _write(tmp_path, {**BASE, "routes": [route(scopes=["orders:delete"])]})
    assert _lint(tmp_path, yaml.safe_load(path.read_text())).returncode == 1
    from devstack.processes import free_port

    started = subprocess.run(
        [sys.executable, "-m", "gateway"], check=False, cwd=PROJECT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PASSGATE_ROUTES_FILE": str(path),
             "PASSGATE_PORT": str(free_port()), "PASSGATE_ADMIN_PORT": str(free_port())},
    )
    assert started.returncode != 0
    assert "orders:delete, which no token can carry" in started.stdout + started.stderr


def test_a_bad_upstream_override_is_the_variables_fault_not_the_routes_files(tmp_path: Path) -> None:
    from gateway.settings import GatewaySettings

    for value, message in (("ftp://users", "must be an http:// or https:// base URL"),
                           ("http://users:8082/api", "no path, query or user")):
        with pytest.raises(SettingsError) as error:
            GatewaySettings.from_env({"PASSGATE_UPSTREAM_USERS": value})
        assert str(error.value).startswith("PASSGATE_UPSTREAM_USERS: ") and message in str(error.value)
        assert "routes" not in str(error.value)
        linted = _lint(tmp_path, {**BASE, "routes": [route()]}, env={"PASSGATE_UPSTREAM_USERS": value})
        assert linted.returncode == 1
        assert "PASSGATE_UPSTREAM_USERS" in linted.stdout and "routes.yaml" not in linted.stdout


def test_an_override_names_an_upstream_with_dashes_by_underscores() -> None:
    document = {**BASE, "upstreams": {"order-archive": {"replicas": ["http://127.0.0.1:1"]}},
                "routes": [route(upstream="order-archive")]}
    table = parse_routes(document, source="t", scopes=ISSUABLE, overrides={"order_archive": ("http://10.0.0.9:80",)})
    assert table.upstreams["order-archive"].replicas == ("http://10.0.0.9:80",)
    with pytest.raises(RoutesError, match="PASSGATE_UPSTREAM_ORDER_ARCHIVES: names no upstream"):
        parse_routes(document, source="t", scopes=ISSUABLE, overrides={"order_archives": ("http://10.0.0.9:80",)})
