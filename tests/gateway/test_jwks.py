"""The JWKS client: throttled refetch on junk kids, outage tolerance, rotation, readiness."""

from __future__ import annotations

import asyncio
import base64
import json

from gateway.app_keys import JWKS
from tests.support.gateway_under_test import GatewayUnderTest


def with_kid(token: str, kid: str) -> str:
    """The same token with another kid in its header (its signature is never reached)."""
    header_b64, rest = token.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    header["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{rest}"


async def flood(stack: GatewayUnderTest, token: str, count: int, prefix: str) -> list[int]:
    """`count` requests, each naming a different random kid, 50 at a time."""
    statuses: list[int] = []
    for start in range(0, count, 50):
        responses = await asyncio.gather(
            *(
                stack.client.get(
                    "/users/me",
                    headers={"Authorization": f"Bearer {with_kid(token, f'{prefix}-{i}')}"},
                )
                for i in range(start, min(count, start + 50))
            )
        )
        for response in responses:
            statuses.append(response.status)
            response.release()
    return statuses


async def test_random_kids_cause_at_most_one_fetch_per_cooldown(make_gateway) -> None:
    """1,000 junk kids within one cooldown: no fetch; after it: exactly one more."""
    stack = await make_gateway(jwks_refetch_cooldown_seconds=30)
    token = stack.token()
    baseline = stack.jwks.fetches
    statuses = await flood(stack, token, 1000, "junk")
    assert set(statuses) == {401}
    assert stack.jwks.fetches - baseline <= 1
    stack.clock.advance(31)
    second = stack.jwks.fetches
    statuses = await flood(stack, token, 1000, "more-junk")
    assert set(statuses) == {401}
    assert stack.jwks.fetches - second == 1
    assert stack.metric("gateway_auth_failures_total", {"reason": "unknown_kid"}) == 2000
    # Valid tokens kept working throughout.
    assert (await stack.client.get("/users/me", headers=stack.bearer())).status == 200


async def test_issuer_outage_keeps_serving_the_last_good_key_set(make_gateway) -> None:
    """With the JWKS endpoint down, valid tokens keep working up to the maximum staleness."""
    stack = await make_gateway(jwks_max_staleness_seconds=3600)
    await stack.jwks.server.close()
    stack.clock.advance(600)
    assert await stack.app[JWKS].refresh() is False
    assert stack.metric("gateway_jwks_refreshes_total", {"result": "error"}) >= 1
    response = await stack.client.get("/users/me", headers=stack.bearer())
    assert response.status == 200
    assert (await stack.client.get("/readyz")).status == 200
    assert stack.metric("gateway_jwks_age_seconds") == 600

    stack.clock.advance(3600)
    response = await stack.client.get("/users/me", headers=stack.bearer())
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert "Retry-After" in response.headers
    ready = await stack.client.get("/readyz")
    assert ready.status == 503
    assert "jwks" in (await ready.json(content_type=None))["checks"]


async def test_failing_refresh_keeps_keys(make_gateway) -> None:
    """A 503 from the issuer is an error, not an empty key set."""
    stack = await make_gateway()
    stack.jwks.failing = True
    stack.clock.advance(60)
    assert await stack.app[JWKS].refresh() is False
    assert stack.app[JWKS].kids == {"k1"}


async def test_new_key_is_picked_up_without_restart(make_gateway) -> None:
    """A rotated-in key works once the cooldown allows a refetch on its kid."""
    stack = await make_gateway(jwks_refetch_cooldown_seconds=30)
    stack.jwks.keys.append(stack.keys["k2"])
    stack.clock.advance(31)
    before = stack.jwks.fetches
    response = await stack.client.get("/users/me", headers=stack.bearer("k2"))
    assert response.status == 200
    assert stack.jwks.fetches == before + 1
    assert stack.metric("gateway_jwks_keys") == 2


async def test_unknown_kid_within_cooldown_is_negative_cached(make_gateway) -> None:
    """A kid refused once is not looked up again until the cooldown has passed."""
    stack = await make_gateway(jwks_refetch_cooldown_seconds=30)
    stack.clock.advance(31)
    token = stack.token("k2")
    before = stack.jwks.fetches
    assert (await stack.client.get("/users/me", headers={"Authorization": f"Bearer {token}"})).status == 401
    stack.jwks.keys.append(stack.keys["k2"])  # published now, but the kid is remembered
    assert (await stack.client.get("/users/me", headers={"Authorization": f"Bearer {token}"})).status == 401
    assert stack.jwks.fetches == before + 1
    stack.clock.advance(31)
    assert (await stack.client.get("/users/me", headers={"Authorization": f"Bearer {token}"})).status == 200


async def test_concurrent_misses_share_one_fetch(make_gateway) -> None:
    stack = await make_gateway()
    stack.jwks.keys.append(stack.keys["k2"])
    stack.clock.advance(31)
    before = stack.jwks.fetches
    headers = stack.bearer("k2")
    responses = await asyncio.gather(*(stack.client.get("/users/me", headers=headers) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert stack.jwks.fetches == before + 1


async def test_readiness_waits_for_the_first_key_set(make_gateway, jwks_server) -> None:
    """Before any key set was fetched the gateway is alive but not ready."""
    jwks_server.failing = True
    stack = await make_gateway()
    assert (await stack.client.get("/healthz")).status == 200
    ready = await stack.client.get("/readyz")
    assert ready.status == 503
    jwks_server.failing = False
    assert await stack.app[JWKS].refresh() is True
    assert (await stack.client.get("/readyz")).status == 200
