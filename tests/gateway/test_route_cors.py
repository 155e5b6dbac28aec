"""Per-route CORS: a route narrows the global origins, methods and exposed headers, in its
preflights and its actual answers alike; widening is refused at start and on reload."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from aiohttp import hdrs

from common.settings import SettingsError
from gateway.app_keys import RELOADER, ROUTING, SETTINGS
from gateway.cors import CorsPolicy, narrowed
from common.scopes import default_scope_policy
from gateway.routes import RouteCors, RoutesError, parse_routes
from tests.support.gateway_under_test import PACKAGED_ROUTES, write_routes

APP = "https://app.example.com"
ADMIN = "https://admin.example.org"
USER = "/users/00000000-0000-4000-8000-000000000abc"
ADMIN_ORDERS = {
    "name": "orders-admin", "path": "/admin/orders", "methods": ["GET", "DELETE"],
    "upstream": "orders", "scopes": ["admin"], "cors": {"methods": ["GET"]},
}

ISSUABLE = default_scope_policy().issuable


@pytest.fixture
async def gateway(make_gateway) -> Any:
    return await make_gateway(
        cors_origins=(APP, ADMIN),
        routes={
            "users_by_id": {"cors": {"origins": [ADMIN]}},
            "orders_list": {"cors": {"expose_headers": ["X-Request-Id"]}},
            "extra_routes": [ADMIN_ORDERS],
        },
    )


def preflight(origin: str, method: str) -> dict[str, str]:
    return {hdrs.ORIGIN: origin, hdrs.ACCESS_CONTROL_REQUEST_METHOD: method,
            hdrs.ACCESS_CONTROL_REQUEST_HEADERS: "Authorization"}


async def test_a_route_narrows_the_origins_of_its_preflights(gateway) -> None:
    refused = await gateway.client.options(USER, headers=preflight(APP, "GET"))
    assert refused.status == 403
    assert hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in refused.headers
    allowed = await gateway.client.options(USER, headers=preflight(ADMIN, "GET"))
    assert allowed.status == 200
    assert allowed.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == ADMIN
    # Other routes keep the global list.
    other = await gateway.client.options("/orders", headers=preflight(APP, "GET"))
    assert other.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == APP
    assert gateway.log == []  # preflights never reach a backend


async def test_a_route_narrows_the_origins_of_its_answers(gateway) -> None:
    admin = gateway.bearer(scope="admin")
    hidden = await gateway.client.get(USER, headers={**admin, hdrs.ORIGIN: APP})
    assert hidden.status == 200  # answered, but the browser may not read it
    for name in (hdrs.ACCESS_CONTROL_ALLOW_ORIGIN, hdrs.ACCESS_CONTROL_EXPOSE_HEADERS):
        assert name not in hidden.headers
    assert "Origin" in hidden.headers[hdrs.VARY]
    assert gateway.metric("gateway_cors_rejections_total", {"reason": "origin_not_allowed"}) == 1
    # Its errors too: a 401 on the narrowed route is unreadable from the other origin.
    unreadable = await gateway.client.get(USER, headers={hdrs.ORIGIN: APP})
    assert unreadable.status == 401
    assert hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in unreadable.headers
    shown = await gateway.client.get(USER, headers={**admin, hdrs.ORIGIN: ADMIN})
    assert shown.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == ADMIN


async def test_a_route_narrows_its_exposed_headers(gateway) -> None:
    narrowed_answer = await gateway.client.get("/orders", headers={**gateway.bearer(), hdrs.ORIGIN: APP})
    assert narrowed_answer.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] == "X-Request-Id"
    error = await gateway.client.get("/orders", headers={hdrs.ORIGIN: APP})
    assert error.status == 401
    assert error.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] == "X-Request-Id"
    whole = await gateway.client.get("/users/me", headers={**gateway.bearer(), hdrs.ORIGIN: APP})
    assert "WWW-Authenticate" in whole.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS]


async def test_a_route_narrows_its_cross_origin_methods(gateway) -> None:
    assert (await gateway.client.options("/admin/orders", headers=preflight(APP, "GET"))).status == 200
    refused = await gateway.client.options("/admin/orders", headers=preflight(APP, "DELETE"))
    assert refused.status == 403
    admin = gateway.bearer(scope="admin")
    deleted = await gateway.client.delete("/admin/orders", headers={**admin, hdrs.ORIGIN: APP})
    assert deleted.status == 200  # same-origin callers and servers may still use it
    assert hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in deleted.headers
    read = await gateway.client.get("/admin/orders", headers={**admin, hdrs.ORIGIN: APP})
    assert read.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == APP


async def test_a_preflight_for_an_unrouted_method_or_path_is_refused(gateway) -> None:
    assert (await gateway.client.options("/orders", headers=preflight(APP, "PATCH"))).status == 403
    # A path no route has is not there, for a preflight as for anything else.
    assert (await gateway.client.options("/nowhere", headers=preflight(APP, "GET"))).status == 404
    # The gateway's own paths are no routes: OPTIONS there is a method they do not have.
    assert (await gateway.client.options("/healthz", headers=preflight(APP, "GET"))).status == 405


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"origins": ["https://evil.example.net"]}, "not allowed by PASSGATE_CORS_ORIGINS"),
        ({"origins": ["*"]}, "not allowed by PASSGATE_CORS_ORIGINS"),
        ({"expose_headers": ["Set-Cookie"]}, "not among the gateway's exposed headers"),
    ],
)
async def test_a_route_that_would_widen_cors_stops_the_start(make_gateway, route, message) -> None:
    with pytest.raises(RoutesError, match=message):
        await make_gateway(cors_origins=(APP,), routes={"orders_list": {"cors": route}})


async def test_a_reload_that_would_widen_cors_is_refused(gateway) -> None:
    before = gateway.app[ROUTING].current
    write_routes(gateway.app[SETTINGS].routes_file, gateway.upstreams,
                 orders_list={"cors": {"origins": ["https://evil.example.net"]}})
    assert await gateway.app[RELOADER].reload("test") == "refused"
    assert gateway.app[ROUTING].current is before


def test_patterns_narrow_only_within_a_global_pattern() -> None:
    policy = CorsPolicy(("https://*.example.com", "https://app.example.org"))
    inner = narrowed(policy, RouteCors(("https://*.api.example.com", "https://app.example.org"), None, None))
    assert inner.allows("https://eu.api.example.com")
    assert not inner.allows("https://www.example.com")
    for wider in ("https://*.example.org", "http://*.example.com", "https://*.example.com:8443"):
        with pytest.raises(SettingsError):
            narrowed(policy, RouteCors((wider,), None, None))


def test_methods_outside_the_route_are_refused_at_load() -> None:
    document = yaml.safe_load(PACKAGED_ROUTES.read_text())
    next(r for r in document["routes"] if r["name"] == "orders-list")["cors"] = {"methods": ["POST"]}
    with pytest.raises(RoutesError, match="cors.methods: POST not among the route's methods"):
        parse_routes(document, source="routes.yaml", scopes=ISSUABLE, overrides={})
