"""Every JOSE header member and every claim, given any JSON shape, is a 401 and never a 5xx.

The tokens are signed with the issuer's real key, so the gateway's verifier gets past the
signature and meets the odd shapes in its own checks (a review found `"alg": [...]` gave
500). Hypothesis generates the shapes; the examples are collected first and then sent
through the real gateway app, bounded in number, derandomized so a run is repeatable.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm

from tests.support.gateway_under_test import mint

ACCEPTABLE = {200, 401, 403}
# aiohttp's parser refuses a header line over 8190 bytes with 400 before any gateway code.
MAX_FIELD = 8190
SHAPES = settings(
    max_examples=150, derandomize=True, database=None, deadline=None,
    suppress_health_check=list(HealthCheck),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.text(min_size=2000, max_size=2000, alphabet="ab"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
HEADER_MEMBERS = ("alg", "typ", "kid", "crit", "jku", "x5u", "cty", "b64")
CLAIMS = ("iss", "aud", "sub", "exp", "iat", "nbf", "jti", "scope", "client_id")


def _collect(strategy: st.SearchStrategy[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    @SHAPES
    @given(strategy)
    def collect(value: dict[str, Any]) -> None:
        found.append(value)

    collect()
    return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_token(header_json: str, payload_json: str) -> str:
    """A token whose segments are the given JSON texts, unsigned-but-shaped (signature junk)."""
    return f"{_b64(header_json.encode())}.{_b64(payload_json.encode())}.{_b64(b'x' * 256)}"


def _signed(stack, header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    """A token signed with the issuer's key whatever the header says (PyJWT's encoder would
    refuse some shapes itself): the valid token's members, then the given ones on top."""
    valid = jwt.decode(mint(stack.keys["k1"], stack.clock), options={"verify_signature": False})
    valid.update(claims or {})
    full_header = {"alg": "RS256", "typ": "at+jwt", "kid": "k1", **header}
    signing_input = f"{_b64(json.dumps(full_header).encode())}.{_b64(json.dumps(valid).encode())}"
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input.encode(), stack.keys["k1"].private)
    return f"{signing_input}.{_b64(signature)}"


async def _assert_refused_cleanly(stack, token: str) -> int:
    response = await stack.client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    if len(token) + len("Bearer ") > MAX_FIELD:
        assert response.status == 400
        return 400
    assert response.status in ACCEPTABLE, (response.status, await response.text(), token[:200])
    if response.status == 401:
        assert response.content_type == "application/problem+json"
        assert "invalid_token" in response.headers["WWW-Authenticate"]
    return response.status


async def test_any_header_member_shape_is_refused_cleanly(make_gateway) -> None:
    stack = await make_gateway()
    headers = _collect(st.dictionaries(st.sampled_from(HEADER_MEMBERS), json_values, min_size=1, max_size=3))
    statuses = []
    for header in headers:
        token = _signed(stack, header)
        statuses.append(await _assert_refused_cleanly(stack, token))
    assert 401 in statuses


async def test_any_claim_shape_is_refused_cleanly(make_gateway) -> None:
    stack = await make_gateway()
    claim_sets = _collect(st.dictionaries(st.sampled_from(CLAIMS), json_values, min_size=1, max_size=3))
    statuses = []
    for claims in claim_sets:
        token = _signed(stack, {}, claims)
        statuses.append(await _assert_refused_cleanly(stack, token))
    assert 401 in statuses


async def test_deeply_nested_and_non_finite_members_are_401(make_gateway) -> None:
    """Nesting deeper than the JSON parser's recursion limit, and NaN or infinite times."""
    stack = await make_gateway()
    deep = "[" * 2000 + "]" * 2000
    good_header = json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": "k1"})
    for token in (
        _raw_token('{"alg": ' + deep + "}", "{}"),
        _raw_token(good_header, '{"sub": ' + deep + "}"),
        _signed(stack, {}, {"exp": float("nan")}),
        _signed(stack, {}, {"exp": float("inf")}),
        _signed(stack, {}, {"iat": float("-inf")}),
        _signed(stack, {}, {"nbf": float("nan")}),
    ):
        assert await _assert_refused_cleanly(stack, token) == 401
