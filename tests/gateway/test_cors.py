"""CORS: allowlist and anchored patterns, preflights without tokens, readable errors."""

from __future__ import annotations

import pytest
from aiohttp import hdrs

from common.settings import SettingsError
from gateway.cors import CorsPolicy

ORIGIN = "https://app.example.com"
OTHER = "https://evil.example.org"


async def test_preflight_from_allowed_origin_needs_no_token(make_gateway) -> None:
    stack = await make_gateway(cors_origins=(ORIGIN,))
    response = await stack.client.options(
        "/orders",
        headers={
            hdrs.ORIGIN: ORIGIN,
            hdrs.ACCESS_CONTROL_REQUEST_METHOD: "POST",
            hdrs.ACCESS_CONTROL_REQUEST_HEADERS: "Authorization, Content-Type, Idempotency-Key",
        },
    )
    assert response.status == 200
    assert response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == ORIGIN
    assert response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] == "POST"
    assert "AUTHORIZATION" in response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS].upper()
    assert "Origin" in response.headers[hdrs.VARY]
    assert hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS not in response.headers
    assert stack.log == []


async def test_origin_not_on_the_list_gets_no_cors_headers(make_gateway) -> None:
    stack = await make_gateway(cors_origins=(ORIGIN,))
    response = await stack.client.get("/users/me", headers={**stack.bearer(), hdrs.ORIGIN: OTHER})
    assert response.status == 200
    for name in (hdrs.ACCESS_CONTROL_ALLOW_ORIGIN, hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS,
                 hdrs.ACCESS_CONTROL_EXPOSE_HEADERS):
        assert name not in response.headers
    assert "Origin" in response.headers[hdrs.VARY]
    assert stack.metric("gateway_cors_rejections_total", {"reason": "origin_not_allowed"}) == 1


async def test_preflight_from_other_origin_is_refused(make_gateway) -> None:
    stack = await make_gateway(cors_origins=(ORIGIN,))
    response = await stack.client.options(
        "/orders", headers={hdrs.ORIGIN: OTHER, hdrs.ACCESS_CONTROL_REQUEST_METHOD: "GET"}
    )
    assert response.status == 403
    assert hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in response.headers
    assert stack.metric("gateway_cors_rejections_total", {"reason": "origin_not_allowed"}) == 1


async def test_preflight_for_unlisted_method_or_header_is_refused(make_gateway) -> None:
    stack = await make_gateway(cors_origins=(ORIGIN,))
    method = await stack.client.options(
        "/orders", headers={hdrs.ORIGIN: ORIGIN, hdrs.ACCESS_CONTROL_REQUEST_METHOD: "DELETE"}
    )
    header = await stack.client.options(
        "/orders",
        headers={hdrs.ORIGIN: ORIGIN, hdrs.ACCESS_CONTROL_REQUEST_METHOD: "GET",
                 hdrs.ACCESS_CONTROL_REQUEST_HEADERS: "X-User-Id"},
    )
    assert (method.status, header.status) == (403, 403)
    assert stack.metric("gateway_cors_rejections_total", {"reason": "preflight_not_allowed"}) == 2


@pytest.mark.parametrize("case", ["401", "403", "404", "405", "429", "503"])
async def test_allowed_origin_can_read_every_error(make_gateway, case: str) -> None:
    """Errors carry ACAO, Vary: Origin and expose the headers a client needs to react."""
    stack = await make_gateway(
        cors_origins=(ORIGIN,),
        replicas=1,
        routes={"orders_list": {"rate_limit": {"requests": 1, "per": 3600, "burst": 1}}},
    )
    origin = {hdrs.ORIGIN: ORIGIN}
    if case == "401":
        response = await stack.client.get("/users/me", headers=origin)
    elif case == "403":
        response = await stack.client.get(
            "/users/00000000-0000-4000-8000-000000000abc", headers={**origin, **stack.bearer()}
        )
    elif case == "404":
        response = await stack.client.get("/missing", headers=origin)
    elif case == "405":
        response = await stack.client.delete("/orders", headers=origin)
    elif case == "429":
        await stack.client.get("/orders", headers={**origin, **stack.bearer()})
        response = await stack.client.get("/orders", headers={**origin, **stack.bearer()})
    else:
        for _ in range(4):
            await stack.backends["users-0"].close()
            response = await stack.client.get("/users/me", headers={**origin, **stack.bearer()})
    assert response.status == int(case)
    assert response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == ORIGIN
    assert "Origin" in response.headers[hdrs.VARY]
    exposed = response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS].lower()
    for name in ("www-authenticate", "retry-after", "ratelimit", "x-request-id"):
        assert name in exposed


async def test_upstream_cors_headers_are_replaced_by_the_gateways(make_gateway) -> None:
    """The backend sends ACAO: * and credentials; the client sees only the gateway's decision."""
    stack = await make_gateway(cors_origins=(ORIGIN,))
    response = await stack.client.get("/users/me", headers={**stack.bearer(), hdrs.ORIGIN: ORIGIN})
    assert response.status == 200
    assert response.headers.getall(hdrs.ACCESS_CONTROL_ALLOW_ORIGIN) == [ORIGIN]
    assert hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS not in response.headers


async def test_credentials_only_when_configured(make_gateway) -> None:
    stack = await make_gateway(cors_origins=(ORIGIN,), cors_allow_credentials=True)
    response = await stack.client.get("/users/me", headers={**stack.bearer(), hdrs.ORIGIN: ORIGIN})
    assert response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] == "true"


async def test_vary_origin_on_every_response(make_gateway) -> None:
    stack = await make_gateway()
    for path in ("/healthz", "/users/me", "/nope"):
        response = await stack.client.get(path)
        assert "Origin" in response.headers[hdrs.VARY], path


async def test_wildcard_subdomain_pattern_is_anchored(make_gateway) -> None:
    stack = await make_gateway(cors_origins=("https://*.example.com",))
    for origin, allowed in [
        ("https://app.example.com", True),
        ("https://a.b.example.com", True),
        ("https://example.com", False),
        ("http://app.example.com", False),
        ("https://evilexample.com", False),
        ("https://app.example.com.evil.org", False),
        ("https://app.example.com:8443", False),
        ("null", False),
    ]:
        response = await stack.client.get("/healthz", headers={hdrs.ORIGIN: origin})
        assert (hdrs.ACCESS_CONTROL_ALLOW_ORIGIN in response.headers) is allowed, origin


@pytest.mark.parametrize(
    ("origins", "credentials", "message"),
    [
        (("*",), True, "credentials"),
        (("https://*",), False, "pattern"),
        (("https://*.com",), False, "pattern"),
        (("https://app.*.com",), False, "pattern"),
        (("https://app.example.com/path",), False, "not an origin"),
        (("null",), False, "not an origin"),
    ],
)
def test_unsafe_cors_settings_are_refused_at_load(origins, credentials, message) -> None:
    with pytest.raises(SettingsError, match=message):
        CorsPolicy(origins, allow_credentials=credentials)


async def test_wildcard_without_credentials_allows_any_origin(make_gateway) -> None:
    stack = await make_gateway(cors_origins=("*",))
    response = await stack.client.get("/healthz", headers={hdrs.ORIGIN: OTHER})
    assert response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] == OTHER
    assert hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS not in response.headers
