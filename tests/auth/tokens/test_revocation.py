"""POST /auth/revoke (RFC 7009): refresh tokens end their family; nothing tells which tokens
exist; access tokens and other clients' tokens are refused; clients authenticate."""

from __future__ import annotations

import base64
import ipaddress
import secrets

from tests.support.auth_client import add_client, basic, introspect, login, register, revoke
from tests.support.metrics import sample_sum, scrape


async def refresh(client, refresh_token: str):
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


async def test_revoking_a_refresh_token_ends_its_family(auth_client, database_url) -> None:
    client = await auth_client(database_url=database_url)
    await register(client)
    first = await login(client)
    rotated = await (await refresh(client, first["refresh_token"])).json()
    other_login = await login(client)

    response = await revoke(client, rotated["refresh_token"], token_type_hint="refresh_token")
    assert response.status == 200
    assert await response.read() == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert (await refresh(client, rotated["refresh_token"])).status == 401
    # The login's other tokens are dead with it; another login is untouched.
    assert (await refresh(client, first["refresh_token"])).status == 401
    assert (await refresh(client, other_login["refresh_token"])).status == 200
    # Revoking again, or revoking a spent token of the family, is still a 200.
    assert (await revoke(client, rotated["refresh_token"])).status == 200
    assert (await revoke(client, first["refresh_token"])).status == 200

    metrics = await scrape(client.session, str(client.make_url("/metrics")))
    assert sample_sum(metrics, "auth_token_revocations_total", result="revoked") == 1
    assert sample_sum(metrics, "auth_token_revocations_total", result="nothing_to_revoke") == 2


async def test_unknown_and_malformed_tokens_answer_like_a_revocation(auth_client) -> None:
    client = await auth_client()
    for token in ("pgr_" + "A" * 43, "not a token", "x" * 5000, "a.b.c", "\x00"):
        response = await revoke(client, token)
        assert response.status == 200, token
        assert await response.read() == b""


async def test_access_tokens_are_an_unsupported_token_type(auth_client) -> None:
    client = await auth_client()
    await register(client)
    pair = await login(client)
    response = await revoke(client, pair["access_token"], token_type_hint="access_token")
    assert response.status == 400
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["error"] == "unsupported_token_type"
    assert pair["access_token"] not in await response.text()
    # Nothing was revoked: the login goes on.
    assert (await refresh(client, pair["refresh_token"])).status == 200


async def test_another_clients_token_is_refused_and_stays_valid(auth_client) -> None:
    client = await auth_client()
    secret = await add_client(client, "billing", "orders:read")
    await register(client)
    pair = await login(client)
    for headers, form in (
        (basic("billing", secret), {}),
        (None, {"client_id": "billing", "client_secret": secret}),
    ):
        response = await revoke(client, pair["refresh_token"], headers=headers, **form)
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_grant"
    assert (await refresh(client, pair["refresh_token"])).status == 200
    # A confidential client authenticated either way gets 200 for a token it could own.
    assert (await revoke(client, "pgr_unknown", headers=basic("billing", secret))).status == 200


async def test_client_authentication_is_required_and_checked(auth_client) -> None:
    client = await auth_client()
    secret = await add_client(client, "billing", "orders:read")
    await register(client)
    pair = await login(client)
    token = pair["refresh_token"]
    unauthenticated = [
        ({}, {}),  # nobody
        ({}, {"client_id": "billing"}),  # a confidential client without its secret
        ({}, {"client_id": "nobody"}),
        ({}, {"client_secret": secret}),
        ({}, {"client_id": "billing", "client_secret": "pgs_wrong"}),
        ({}, {"client_id": "BILLING\x00", "client_secret": secret}),
        (basic("billing", "pgs_wrong"), {}),
        (basic("passgate", "anything"), {}),  # the public client has no secret to check
        ({"Authorization": "Basic %%%"}, {}),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, {}),
    ]
    for headers, form in unauthenticated:
        response = await client.post(
            "/auth/revoke", data={"token": token, **form}, headers=headers
        )
        assert response.status == 401, (headers, form)
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert response.headers["Cache-Control"] == "no-store"
        body = await response.json()
        assert set(body) == {"error", "error_description"} and body["error"] == "invalid_client"
        assert secret not in await response.text()
    ambiguous = [
        (basic("billing", secret), {"client_secret": secret}),  # two methods at once
        (basic("billing", secret), {"client_id": "other"}),
    ]
    for headers, form in ambiguous:
        response = await client.post(
            "/auth/revoke", data={"token": token, **form}, headers=headers
        )
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    # None of that touched the login.
    assert (await refresh(client, token)).status == 200


async def test_requests_without_a_token_or_a_form(auth_client) -> None:
    client = await auth_client()
    for data in ({"client_id": "passgate"}, {"client_id": "passgate", "token": ""}):
        response = await client.post("/auth/revoke", data=data)
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"
    as_json = await client.post("/auth/revoke", json={"client_id": "passgate", "token": "t"})
    assert as_json.status == 400 and (await as_json.json())["error"] == "invalid_request"
    repeated = await client.post(
        "/auth/revoke",
        data="client_id=passgate&token=a&token=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status == 400 and (await repeated.json())["error"] == "invalid_request"


async def test_failed_client_authentication_is_throttled_per_address(auth_client, clock) -> None:
    client = await auth_client(login_max_failures_per_address=3, login_lockout=60)
    secret = await add_client(client, "reader", "", may_introspect=True)
    await register(client)
    pair = await login(client)
    for _ in range(3):
        response = await revoke(client, "t", headers=basic("reader", "pgs_wrong"))
        assert response.status == 401
    # Locked: even the right secret is not checked, at either endpoint.
    locked = await revoke(client, "t", headers=basic("reader", secret))
    assert locked.status == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    assert (await locked.json())["error"] == "invalid_client"
    locked = await client.post(
        "/auth/introspect", data={"token": "t"}, headers=basic("reader", secret)
    )
    assert locked.status == 429
    # The public client checks no secret, so it is not held up; nor are logins.
    assert (await revoke(client, "pgr_unknown")).status == 200
    assert (await login(client))["access_token"]
    clock.advance(61)
    assert (await introspect(client, pair["access_token"], "reader", secret))["active"] is True


async def test_client_failures_are_counted_across_replicas_in_redis(auth_client, redis_url) -> None:
    """Two replicas sharing Redis: failures at one lock the address at the other; another
    address is not held up. A random address per run keeps runs apart in Redis."""
    start = ipaddress.IPv4Address("198.18.0.0") + secrets.randbelow(2**15)
    prober, neighbour = ({"X-Forwarded-For": str(start + n)} for n in (0, 1))
    first = await auth_client(redis_url=redis_url, login_max_failures_per_address=2)
    second = await auth_client(redis_url=redis_url, login_max_failures_per_address=2)
    secret = await add_client(first, "reader", "", may_introspect=True)
    for _ in range(2):
        wrong = await revoke(first, "t", headers={**basic("reader", "pgs_x"), **prober})
        assert wrong.status == 401
    locked = await revoke(second, "t", headers={**basic("reader", secret), **prober})
    assert locked.status == 429 and int(locked.headers["Retry-After"]) >= 1
    allowed = await revoke(second, "t", headers={**basic("reader", secret), **neighbour})
    assert allowed.status == 200
