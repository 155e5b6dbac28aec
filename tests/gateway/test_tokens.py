"""Token checks: each one refuses exactly the token it exists for, and is counted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable

import pytest

from tests.support.gateway_under_test import (
    USER_ID,
    GatewayUnderTest,
    mint,
    raw_request,
    received_headers,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(stack: GatewayUnderTest) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the RSA public key's PEM."""
    now = int(stack.clock())
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    payload = {"iss": "http://gateway.test", "aud": "passgate", "sub": USER_ID, "iat": now,
               "exp": now + 600, "jti": "forged", "scope": "admin"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(stack.keys["k1"].public_pem(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(signature.digest())}"


def unsigned(stack: GatewayUnderTest) -> str:
    """alg: none, with an empty signature (RFC 7519 section 6)."""
    now = int(stack.clock())
    header = {"alg": "none", "typ": "at+jwt", "kid": "k1"}
    payload = {"iss": "http://gateway.test", "aud": "passgate", "sub": USER_ID, "iat": now,
               "exp": now + 600, "jti": "unsigned", "scope": "users:read"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


# Each case breaks exactly one property of an otherwise valid token.
CASES: dict[str, tuple[str, Callable[[GatewayUnderTest], str]]] = {
    "expired": ("expired", lambda s: s.token(iat=int(s.clock()) - 700, nbf=int(s.clock()) - 700,
                                              exp=int(s.clock()) - 31)),
    "nbf_in_future": ("not_yet_valid", lambda s: s.token(nbf=int(s.clock()) + 120)),
    "iat_in_future": ("issued_in_future", lambda s: s.token(iat=int(s.clock()) + 120,
                                                           exp=int(s.clock()) + 700)),
    "wrong_iss": ("bad_issuer", lambda s: s.token(iss="http://evil.test")),
    "wrong_aud": ("bad_audience", lambda s: s.token(aud="someone-else")),
    "missing_exp": ("missing_claim", lambda s: s.token(drop=("exp",))),
    "alg_none": ("bad_algorithm", unsigned),
    "hs256_with_public_key": ("bad_algorithm", hs256_with_public_key),
    "wrong_typ": ("bad_type", lambda s: s.token(header={"typ": "JWT"})),
    "lifetime_over_max": ("lifetime_exceeded", lambda s: s.token(exp=int(s.clock()) + 3600)),
    "unknown_kid": ("unknown_kid", lambda s: s.token("rogue")),
    "bad_signature": ("bad_signature", lambda s: mint(s.keys["rogue"], s.clock, header={"kid": "k1"})),
}


async def test_valid_token_reaches_backend_with_identity(make_gateway) -> None:
    """The control case: a correct token passes and the backend learns who is calling."""
    stack = await make_gateway()
    response = await stack.client.get("/users/me", headers=stack.bearer(jti="tok-1"))
    assert response.status == 200
    seen = received_headers(await response.json())
    assert seen["x-user-id"] == USER_ID
    assert seen["x-user-scopes"] == "orders:read orders:write users:read users:write"
    assert seen["x-user-client-id"] == "passgate-web"
    assert seen["x-user-token-id"] == "tok-1"
    assert "authorization" not in seen


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_token_check_refuses_its_token(make_gateway, case: str) -> None:
    """A token failing one check gets 401 invalid_token, counted under that reason."""
    stack = await make_gateway()
    reason, make_token = CASES[case]
    response = await stack.client.get(
        "/users/me", headers={"Authorization": f"Bearer {make_token(stack)}"}
    )
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    body = await response.json(content_type=None)
    assert body["reason"] == reason
    assert stack.metric("gateway_auth_failures_total", {"reason": reason}) == 1
    assert stack.log == []


async def test_leeway_accepts_small_clock_skew(make_gateway) -> None:
    """Within the 30 s leeway, a just-expired or just-future token still passes."""
    stack = await make_gateway()
    now = int(stack.clock())
    for claims in ({"exp": now - 10, "iat": now - 600}, {"nbf": now + 10, "iat": now + 10}):
        response = await stack.client.get("/users/me", headers=stack.bearer(**claims))
        assert response.status == 200, claims


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": "access_token=TOKEN"},
    ],
    ids=["none", "basic", "cookie"],
)
async def test_missing_token_is_401_without_error_code(make_gateway, headers: dict[str, str]) -> None:
    """No Bearer header: 401 with a bare Bearer challenge (RFC 6750 section 3.1)."""
    stack = await make_gateway()
    token = stack.token()
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    response = await stack.client.get("/users/me", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert "error=" not in response.headers["WWW-Authenticate"]
    assert stack.metric("gateway_auth_failures_total", {"reason": "missing_token"}) == 1


async def test_token_in_query_string_is_never_accepted(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.get(f"/users/me?access_token={stack.token()}")
    assert response.status == 401
    assert stack.log == []


async def test_two_authorization_headers_are_refused(make_gateway) -> None:
    stack = await make_gateway()
    headers = [("Authorization", f"Bearer {stack.token()}"), ("Authorization", f"Bearer {stack.token()}")]
    response = await stack.client.get("/users/me", headers=headers)
    assert response.status == 401
    assert (await response.json(content_type=None))["reason"] == "malformed"


async def test_missing_scope_is_403_insufficient_scope(make_gateway) -> None:
    stack = await make_gateway()
    response = await stack.client.get("/users/00000000-0000-4000-8000-000000000000",
                                      headers=stack.bearer())
    assert response.status == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert 'scope="admin"' in response.headers["WWW-Authenticate"]
    assert stack.metric("gateway_auth_failures_total", {"reason": "insufficient_scope"}) == 1
    assert stack.log == []


async def test_unknown_scopes_never_reach_backends(make_gateway) -> None:
    """A scope outside the routes file's list (e.g. profiles:provision) is not forwarded."""
    stack = await make_gateway()
    response = await stack.client.get(
        "/users/me", headers=stack.bearer(scope="users:read profiles:provision")
    )
    assert response.status == 200
    assert received_headers(await response.json())["x-user-scopes"] == "users:read"


async def test_cache_skips_signature_work_and_dies_with_the_token(make_gateway) -> None:
    """Repeats of one token hit the cache; once it expires, the cached entry is gone too."""
    stack = await make_gateway()
    now = int(stack.clock())
    headers = stack.bearer(iat=now, exp=now + 300)
    for _ in range(5):
        assert (await stack.client.get("/users/me", headers=headers)).status == 200
    assert stack.metric("gateway_token_cache_lookups_total", {"result": "miss"}) == 1
    assert stack.metric("gateway_token_cache_lookups_total", {"result": "hit"}) == 4
    stack.clock.advance(300 + 31)
    response = await stack.client.get("/users/me", headers=headers)
    assert response.status == 401
    assert (await response.json(content_type=None))["reason"] == "expired"


async def test_cache_is_bounded_by_entry_count(make_gateway) -> None:
    from gateway.app_keys import VERIFIER

    stack = await make_gateway(token_cache_size=3)
    for index in range(6):
        assert (await stack.client.get("/users/me", headers=stack.bearer(jti=f"t{index}"))).status == 200
    assert len(stack.app[VERIFIER]._cache) == 3


async def test_cached_token_dies_with_its_key(make_gateway) -> None:
    """A key withdrawn from the JWKS stops its tokens, cached or not, at the next refresh."""
    from gateway.app_keys import JWKS

    stack = await make_gateway()
    stack.jwks.keys.append(stack.keys["k2"])
    await stack.app[JWKS].refresh()
    headers = stack.bearer("k2")
    assert (await stack.client.get("/users/me", headers=headers)).status == 200
    stack.jwks.keys = [stack.keys["k1"]]
    await stack.app[JWKS].refresh()
    response = await stack.client.get("/users/me", headers=headers)
    assert response.status == 401
    assert (await response.json(content_type=None))["reason"] == "unknown_kid"


def test_symmetric_algorithms_cannot_be_configured() -> None:
    from common.settings import SettingsError
    from gateway.settings import GatewaySettings

    with pytest.raises(SettingsError, match="asymmetric"):
        GatewaySettings.from_env({"PASSGATE_TOKEN_ALGORITHMS": "RS256,HS256"})
    with pytest.raises(SettingsError, match="PASSGATE_TOKEN_LEEWAY"):
        GatewaySettings.from_env({"PASSGATE_TOKEN_LEEWAY": "120"})


@pytest.mark.parametrize("raw", ["Bearer \u00ff\u00fe.\u00e9.x", "Bearer ey\udcff.ey.x"])
async def test_token_with_bytes_outside_ascii_is_401_not_500(make_gateway, raw: str) -> None:
    """Header bytes that are not valid UTF-8 reach the verifier as odd characters: refused."""
    stack = await make_gateway()
    status, body = await raw_request(
        stack.client, "/orders", headers={"Authorization": raw}
    )
    assert status == 401, body
