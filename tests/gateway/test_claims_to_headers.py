"""Claims to headers: chosen verified claims reach the backend as X-User-* fields, rendered one
way only, with every inbound copy dropped; values no header can carry refuse the token."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from common.identity import Identity
from gateway.claims import MAX_VALUE_LENGTH, ClaimHeaders, render
from common.scopes import default_scope_policy
from gateway.routes import RoutesError, parse_routes
from gateway.verification import TokenError, Verified
from tests.support.gateway_under_test import PACKAGED_ROUTES, received_headers

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10,
)

FORWARDED = {
    "email": "X-User-Email",
    "tenant": "X-User-Tenant",
    "roles": "X-User-Roles",
    "email_verified": "X-User-Email-Verified",
    "org": "X-User-Org",
}

ISSUABLE = default_scope_policy().issuable


@pytest.fixture
async def gateway(make_gateway) -> Any:
    return await make_gateway(routes={"users_me_read": {"claims_to_headers": FORWARDED}})


async def test_chosen_claims_reach_the_backend_and_spoofed_copies_do_not(gateway) -> None:
    token = gateway.bearer(email="ada@example.test", tenant=42, roles=["editor", "admin"],
                           email_verified=True, org={"name": "Acme", "id": 7})
    spoofed = {"X-User-Email": "mallory@example.test", "x_user_tenant": "1", "X-USER-ROLES": "root"}
    response = await gateway.client.get("/users/me", headers={**token, **spoofed})
    assert response.status == 200
    body = await response.json()
    seen = received_headers(body)
    assert seen["x-user-email"] == "ada@example.test"
    assert seen["x-user-tenant"] == "42"
    assert seen["x-user-roles"] == '["editor","admin"]'
    assert seen["x-user-email-verified"] == "true"
    assert seen["x-user-org"] == '{"id":7,"name":"Acme"}'  # keys sorted: one spelling
    names = [name.lower() for name, _ in body["headers"]]
    for name in ("x-user-email", "x-user-tenant", "x-user-roles"):
        assert names.count(name) == 1, name
    assert "x_user_tenant" not in names


async def test_a_claim_the_token_lacks_sends_no_header_even_if_the_client_does(gateway) -> None:
    response = await gateway.client.get(
        "/users/me", headers={**gateway.bearer(), "X-User-Email": "mallory@example.test"}
    )
    assert response.status == 200
    seen = received_headers(await response.json())
    assert "x-user-email" not in seen and "x-user-tenant" not in seen


async def test_routes_without_the_setting_forward_no_claims(gateway) -> None:
    response = await gateway.client.get("/orders", headers=gateway.bearer(email="ada@example.test"))
    assert response.status == 200
    assert "x-user-email" not in received_headers(await response.json())


@pytest.mark.parametrize(
    "value",
    ["line\r\nX-Injected: 1", "tab\there", "naïve", " padded", "x" * 1025, {"k": "x" * 1100}],
)
async def test_a_claim_no_header_can_carry_refuses_the_token(gateway, value) -> None:
    response = await gateway.client.get("/users/me", headers=gateway.bearer(email=value))
    assert response.status == 401
    assert "cannot be forwarded as a header" in (await response.json())["detail"]
    assert gateway.log == []
    assert gateway.metric("gateway_auth_failures_total", {"reason": "malformed"}) == 1


@given(JSON)
def test_any_claim_value_is_one_safe_header_line_or_a_refusal(value: Any) -> None:
    """Whatever JSON a token carries, what reaches the backend is one header line of
    visible ASCII, bounded, spelt the same way every time; or the token is refused."""
    verified = Verified.of(Identity("subject", frozenset()), 0.0, "kid", {"claim": value})
    headers = ClaimHeaders((("claim", "X-User-Claim"),))
    try:
        lines = headers.lines(verified)
    except TokenError as refused:
        assert refused.reason == "malformed"
        return
    assert lines == headers.lines(verified)
    if not lines:
        assert value == ""
        return
    name, _, rest = lines.partition(": ")
    assert name == "X-User-Claim" and rest.endswith("\r\n")
    text = rest[:-2]
    assert text == render(value)
    assert 0 < len(text) <= MAX_VALUE_LENGTH
    assert all(0x20 <= ord(char) <= 0x7E for char in text) and text == text.strip()


def test_rendering_is_deterministic() -> None:
    assert render("a b") == "a b"
    assert render(1.5) == "1.5"
    assert render(False) == "false"
    assert render(None) == "null"
    assert render({"b": [1, {"d": 1, "c": 2}], "a": "é"}) == '{"a":"\\u00e9","b":[1,{"c":2,"d":1}]}'


def _with(route: str, settings: dict[str, Any]) -> dict[str, Any]:
    document = yaml.safe_load(PACKAGED_ROUTES.read_text())
    next(r for r in document["routes"] if r["name"] == route).update(settings)
    return document


@pytest.mark.parametrize(
    ("route", "mapping", "message"),
    [
        ("users-me-read", {"sub": "X-User-Id"}, "X-User-Id is set by the gateway itself"),
        ("users-me-read", {"iss": "X-User-Issuer"}, "X-User-Issuer is set by the gateway itself"),
        ("users-me-read", {"email": "X-Email"}, "claims_to_headers.email"),
        ("users-me-read", {"email": "X-User-Bad Name"}, "claims_to_headers.email"),
        ("users-me-read", {"a": "X-User-Mail", "b": "x-user-mail"}, "named for 'a' and 'b'"),
        ("well-known", {"email": "X-User-Email"}, "a public route has no token"),
    ],
)
def test_claims_to_headers_is_checked_when_the_file_loads(route, mapping, message) -> None:
    with pytest.raises(RoutesError) as refused:
        parse_routes(_with(route, {"claims_to_headers": mapping}), source="routes.yaml", scopes=ISSUABLE, overrides={})
    assert any(message in problem for problem in refused.value.problems), refused.value.problems
