"""Several trusted issuers: a route accepts the issuers it names, each verified with its own
keys, audience and cache, and the backend is told which one vouched."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gateway.app_keys import RELOADER, SETTINGS
from common.scopes import default_scope_policy
from gateway.routes import RoutesError, parse_routes
from tests.support.clock import FakeEpochClock
from tests.support.gateway_under_test import (
    PACKAGED_ROUTES,
    JwksServer,
    SigningKey,
    mint,
    new_key,
    received_headers,
    write_routes,
)

PARTNER_ISSUER = "https://idp.partner.test"
PARTNER_AUDIENCE = "passgate-partner-api"
MACHINE = "partner-machine-7"

ISSUABLE = default_scope_policy().issuable


@pytest.fixture(scope="module")
def partner_key() -> SigningKey:
    return new_key("partner-1")


@pytest.fixture
async def partner_jwks(aiohttp_server, partner_key) -> JwksServer:
    server = JwksServer([partner_key])
    server.server = await aiohttp_server(server.app)
    return server


def partner_token(key: SigningKey, clock: FakeEpochClock, **claims: Any) -> str:
    """A client-credentials access token as the partner's provider would issue it."""
    defaults = {"iss": PARTNER_ISSUER, "aud": PARTNER_AUDIENCE, "sub": MACHINE,
                "client_id": MACHINE, "scope": "orders:read"}
    return mint(key, clock, **(defaults | claims))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def gateway(make_gateway, partner_jwks) -> Any:
    """orders-list accepts Passgate's and the partner's tokens; orders-get the partner's only;
    every other route Passgate's alone (the default)."""
    return await make_gateway(routes={
        "issuers": {"partner": {"issuer": PARTNER_ISSUER, "jwks_url": partner_jwks.url,
                                "audience": PARTNER_AUDIENCE, "algorithms": ["RS256"]}},
        "orders_list": {"issuers": ["passgate", "partner"]},
        "orders_get": {"issuers": ["partner"]},
    })


async def test_a_partner_token_passes_where_the_route_trusts_the_partner(
    gateway, partner_key
) -> None:
    token = partner_token(partner_key, gateway.clock)
    response = await gateway.client.get("/orders", headers=bearer(token))
    assert response.status == 200
    seen = received_headers(await response.json())
    assert seen["x-user-id"] == MACHINE
    assert seen["x-user-issuer"] == "partner"
    assert seen["x-user-scopes"] == "orders:read"
    assert gateway.metric(
        "gateway_issuer_jwks_refreshes_total", {"issuer": "partner", "result": "success"}
    ) >= 1


async def test_a_partner_token_is_refused_where_the_route_does_not_trust_it(
    gateway, partner_key
) -> None:
    token = partner_token(partner_key, gateway.clock, scope="users:read orders:read")
    # Verified (and cached) under the partner first: the cache must not carry it elsewhere.
    assert (await gateway.client.get("/orders", headers=bearer(token))).status == 200
    response = await gateway.client.get("/users/me", headers=bearer(token))
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # Verified under Passgate's rules alone: the partner's key is not in Passgate's key set.
    assert gateway.metric("gateway_auth_failures_total", {"reason": "unknown_kid"}) == 1
    assert [entry["raw_path"] for entry in gateway.log] == ["/orders"]


async def test_passgate_tokens_keep_working_on_a_route_with_two_issuers(gateway) -> None:
    response = await gateway.client.get("/orders", headers=gateway.bearer())
    assert response.status == 200
    assert received_headers(await response.json())["x-user-issuer"] == "passgate"
    # A route that trusts the partner alone refuses Passgate's own tokens.
    order = "00000000-0000-4000-8000-000000000001"
    assert (await gateway.client.get(f"/orders/{order}", headers=gateway.bearer())).status == 401


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "someone-else"}, "bad_audience"),
        ({"iss": "https://idp.stranger.test"}, "bad_issuer"),
    ],
)
async def test_partner_tokens_are_held_to_the_partners_rules(
    gateway, partner_key, change, reason
) -> None:
    response = await gateway.client.get("/orders", headers=bearer(partner_token(partner_key, gateway.clock, **change)))
    assert response.status == 401
    assert gateway.metric("gateway_auth_failures_total", {"reason": reason}) == 1


async def test_a_token_naming_the_partner_but_signed_with_passgates_key_is_refused(
    gateway, keys
) -> None:
    """Each issuer's keys vouch for that issuer only: no key confusion across issuers."""
    forged = partner_token(keys["k1"], gateway.clock)
    response = await gateway.client.get("/orders", headers=bearer(forged))
    assert response.status == 401
    assert gateway.metric("gateway_auth_failures_total", {"reason": "unknown_kid"}) == 1


def _document(**changes: Any) -> dict[str, Any]:
    document = yaml.safe_load(PACKAGED_ROUTES.read_text())
    document["issuers"] = {"partner": {"issuer": PARTNER_ISSUER, "jwks_url": "https://idp.partner.test/jwks",
                                       "audience": PARTNER_AUDIENCE}}
    for name, value in changes.items():
        if name == "issuer":
            document["issuers"]["partner"].update(value)
        else:
            next(r for r in document["routes"] if r["name"] == name).update(value)
    return document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"orders-list": {"issuers": ["partner", "nobody"]}}, "'nobody' is not declared under issuers"),
        ({"well-known": {"issuers": ["partner"]}}, "a public route takes no token"),
        ({"issuer": {"algorithms": ["HS256"]}}, "issuers.partner: algorithms[0]"),
        ({"issuer": {"algorithms": ["none"]}}, "issuers.partner: algorithms[0]"),
        ({"issuer": {"algorithms": []}}, "issuers.partner: algorithms"),
        ({"issuer": {"jwks_url": "file:///etc/keys"}}, "issuers.partner: jwks_url"),
        ({"issuer": {"audience": ""}}, "issuers.partner: audience"),
    ],
)
def test_issuers_are_checked_when_the_file_loads(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutesError) as refused:
        parse_routes(_document(**changes), source="routes.yaml", scopes=ISSUABLE, overrides={})
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


def test_passgate_cannot_be_redeclared() -> None:
    document = _document()
    document["issuers"]["passgate"] = document["issuers"]["partner"]
    with pytest.raises(RoutesError, match="issuers.passgate: is Passgate's own auth"):
        parse_routes(document, source="routes.yaml", scopes=ISSUABLE, overrides={})


def test_a_declared_issuer_is_loaded_with_its_defaults() -> None:
    table = parse_routes(_document(**{"orders-list": {"issuers": ["passgate", "partner"]}}),
                         source="routes.yaml", scopes=ISSUABLE, overrides={})
    partner = table.issuers["partner"]
    assert (partner.algorithms, partner.leeway, partner.max_lifetime) == (("RS256",), 30.0, 900.0)
    routes = {route.name: route for route in table.routes}
    assert routes["orders-list"].issuers == ("passgate", "partner")
    assert routes["orders-place"].issuers == ("passgate",)
    assert routes["well-known"].issuers == ()



async def test_a_reload_starts_trusting_a_new_issuer_and_stops_with_its_removal(
    make_gateway, partner_jwks, partner_key
) -> None:
    stack = await make_gateway()
    token = bearer(partner_token(partner_key, stack.clock))
    assert (await stack.client.get("/orders", headers=token)).status == 401
    trusted = {"issuers": {"partner": {"issuer": PARTNER_ISSUER, "jwks_url": partner_jwks.url,
                                       "audience": PARTNER_AUDIENCE}},
               "orders_list": {"issuers": ["passgate", "partner"]}}
    path = stack.app[SETTINGS].routes_file
    write_routes(path, stack.upstreams, **trusted)
    assert await stack.app[RELOADER].reload("test") == "applied"
    assert (await stack.client.get("/orders", headers=token)).status == 200
    write_routes(path, stack.upstreams)
    assert await stack.app[RELOADER].reload("test") == "applied"
    assert (await stack.client.get("/orders", headers=token)).status == 401
