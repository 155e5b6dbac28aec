"""Backends trust no pod: identity only from a signed assertion, through real processes.

Each request goes straight to a backend (users, orders), as any pod that can reach it
could, with whatever headers it likes. Only an assertion signed by a key of the backend's
trust set, for its audience, by the issuer that key belongs to, and not expired, names
a caller; everything else is a 401 problem.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.assertion import AUTH_ISSUER, GATEWAY_ISSUER, AssertionSigner
from common.assertion_keys import PrivateKeyRing, read_private_keys, rotate, write_trust_file
from common.identity import ASSERTION_HEADER, Identity
from devstack.stack import Stack
from tests.support.http import assert_problem, bearer, register_and_login

SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write"})


def signer(stack: Stack, owner: str, **options) -> AssertionSigner:
    """A signer holding a copy of a component's assertion keys (what a thief would need)."""
    component = "gateway" if owner == GATEWAY_ISSUER else "auth"
    keys_dir = stack.config.data_dir / f"assertion-keys-{component}"
    return AssertionSigner(
        keys_dir,
        issuer=options.pop("issuer", owner),
        audience=options.pop("audience", "passgate-internal"),
        lifetime=30,
        clock=options.pop("clock", time.time),
    )


async def registered(stack: Stack, session: aiohttp.ClientSession) -> str:
    user_id, _ = await register_and_login(session, stack.gateway_url)
    return user_id


async def profile_status(stack: Stack, session: aiohttp.ClientSession, headers: dict[str, str]) -> int:
    async with session.get(f"{stack.url('users')}/users/me", headers=headers) as response:
        if response.status != 200:
            await assert_problem(response, response.status)
        return response.status


def forged_unsigned(user_id: str) -> str:
    header = {"alg": "none", "typ": "passgate-identity+jwt", "kid": "x"}
    claims = {"iss": GATEWAY_ISSUER, "aud": "passgate-internal", "sub": user_id, "scope": " ".join(SCOPES),
              "iat": int(time.time()), "exp": int(time.time()) + 30, "jti": "j"}
    return jwt.encode(claims, None, algorithm="none", headers=header)


def signed_by_unknown_key(user_id: str) -> str:
    claims = {"iss": GATEWAY_ISSUER, "aud": "passgate-internal", "sub": user_id, "scope": " ".join(SCOPES),
              "iat": int(time.time()), "exp": int(time.time()) + 30, "jti": "j"}
    headers = {"kid": "attacker", "typ": "passgate-identity+jwt"}
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=headers)


async def test_a_pod_reaching_a_backend_directly_cannot_vouch_for_anyone(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        user_id = await registered(stack, session)
        identity = Identity(user_id, SCOPES, client_id="passgate-web")
        plain = identity.to_headers()
        attempts = {
            "plain X-User-* fields": plain,
            "an unsigned assertion": {**plain, ASSERTION_HEADER: forged_unsigned(user_id)},
            "garbage": {**plain, ASSERTION_HEADER: "not.a.jwt"},
            "an unknown key": {**plain, ASSERTION_HEADER: signed_by_unknown_key(user_id)},
            "another audience": {
                ASSERTION_HEADER: signer(stack, GATEWAY_ISSUER, audience="elsewhere").sign(identity).token
            },
            # Auth's key is trusted by users, but only as auth: it cannot claim the gateway.
            "a key of another issuer": {
                ASSERTION_HEADER: signer(stack, AUTH_ISSUER, issuer=GATEWAY_ISSUER).sign(identity).token
            },
        }
        for name, headers in attempts.items():
            assert await profile_status(stack, session, headers) == 401, name
            async with session.get(f"{stack.url('orders')}/orders", headers=headers) as response:
                await assert_problem(response, 401)
        # The same identity, vouched for with the gateway's key: accepted (the control).
        good = {ASSERTION_HEADER: signer(stack, GATEWAY_ISSUER).sign(identity).token}
        assert await profile_status(stack, session, good) == 200


async def test_a_captured_assertion_replayed_after_its_lifetime_is_refused(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        user_id = await registered(stack, session)
        identity = Identity(user_id, SCOPES)
        # Signed by the gateway's key 70 s ago: its 30 s and the leeway are over.
        key = PrivateKeyRing(stack.config.data_dir / "assertion-keys-gateway").signing_key(time.time())
        issued = int(time.time()) - 70
        claims = {"iss": GATEWAY_ISSUER, "aud": "passgate-internal", "sub": user_id,
                  "scope": " ".join(SCOPES), "iat": issued, "exp": issued + 30, "jti": "captured"}
        token = jwt.encode(claims, key.private_key, algorithm="EdDSA",
                           headers={"kid": key.kid, "typ": "passgate-identity+jwt"})
        assert await profile_status(stack, session, {ASSERTION_HEADER: token}) == 401
        fresh = signer(stack, GATEWAY_ISSUER).sign(identity)
        assert await profile_status(stack, session, {ASSERTION_HEADER: fresh.token}) == 200


async def test_assertion_key_rotation_needs_no_restart(stack: Stack) -> None:
    data = stack.config.data_dir
    keys_dir, trust_dir = data / "assertion-keys-gateway", data / "assertion-trust"
    async with aiohttp.ClientSession() as session:
        user_id = await registered(stack, session)
        identity = Identity(user_id, SCOPES)
        before = signer(stack, GATEWAY_ISSUER).sign(identity)
        assert await profile_status(stack, session, {ASSERTION_HEADER: before.token}) == 200
        new = rotate(keys_dir, trust_dir, GATEWAY_ISSUER, time.time(), lead=0)
        after = signer(stack, GATEWAY_ISSUER).sign(Identity(user_id, SCOPES, token_id=uuid.uuid4().hex))
        assert jwt.get_unverified_header(after.token)["kid"] == new.kid
        # The running backend trusts the new key at once, and still the old one.
        assert await profile_status(stack, session, {ASSERTION_HEADER: after.token}) == 200
        assert await profile_status(stack, session, {ASSERTION_HEADER: before.token}) == 200

        # An operator revokes the old key (both sets): the running gateway must now sign with
        # the new key, or the backend, which re-reads its trust set, would refuse the flow.
        old_kid = jwt.get_unverified_header(before.token)["kid"]
        kept = [key for key in read_private_keys(keys_dir) if key.kid != old_kid]
        write_trust_file(trust_dir, GATEWAY_ISSUER, kept)
        metadata = json.loads((keys_dir / "keys.json").read_text())
        metadata["keys"] = [entry for entry in metadata["keys"] if entry["kid"] != old_kid]
        (keys_dir / "keys.json.new").write_text(json.dumps(metadata))
        (keys_dir / "keys.json.new").replace(keys_dir / "keys.json")
        await asyncio.sleep(1.1)  # the backend checks its trust set at most once a second
        _, tokens = await register_and_login(session, stack.gateway_url)
        async with session.get(f"{stack.gateway_url}/users/me", headers=bearer(tokens["access_token"])) as response:
            assert response.status == 200, await response.text()
        assert await profile_status(stack, session, {ASSERTION_HEADER: before.token}) == 401


async def test_an_assertion_sent_by_the_client_never_reaches_a_backend(stack: Stack) -> None:
    """The gateway strips client-sent X-User-Assertion (the reserved namespace): if it passed
    one on, the backend would see two assertions and refuse."""
    async with aiohttp.ClientSession() as session:
        user_id, tokens = await register_and_login(session, stack.gateway_url)
        smuggled = signer(stack, GATEWAY_ISSUER).sign(Identity("someone-else", SCOPES)).token
        headers = {**bearer(tokens["access_token"]), ASSERTION_HEADER: smuggled, "X-User-Id": "someone-else"}
        async with session.get(f"{stack.gateway_url}/users/me", headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["id"] == user_id


async def test_two_assertions_are_refused(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        user_id = await registered(stack, session)
        token = signer(stack, GATEWAY_ISSUER).sign(Identity(user_id, SCOPES)).token
        headers = [(ASSERTION_HEADER, token), (ASSERTION_HEADER, token)]
        async with session.get(f"{stack.url('users')}/users/me", headers=headers) as response:
            await assert_problem(response, 401)


@pytest.mark.parametrize("route", ["/users/me", "/orders"])
async def test_requests_through_the_gateway_carry_a_valid_assertion(stack: Stack, route: str) -> None:
    async with aiohttp.ClientSession() as session:
        _, tokens = await register_and_login(session, stack.gateway_url)
        for _ in range(3):  # the second and third reuse the cached assertion
            async with session.get(f"{stack.gateway_url}{route}", headers=bearer(tokens["access_token"])) as response:
                assert response.status == 200, await response.text()
