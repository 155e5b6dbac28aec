"""The identity assertion's signer and verifier, with injected clocks (common.assertion)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.assertion import (
    AUTH_ISSUER,
    GATEWAY_ISSUER,
    AssertionRefused,
    AssertionSigner,
    AssertionVerifier,
)
from common.assertion_keys import RETENTION, ensure_keys, read_private_keys, rotate
from common.identity import Identity

T0 = 1_900_000_000.0
ALICE = Identity("alice", frozenset({"orders:read", "users:read"}), "passgate-web", "token-1")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dirs(tmp_path: Path, clock: Clock) -> tuple[Path, Path, Path]:
    trust = tmp_path / "trust"
    ensure_keys(tmp_path / "gateway", trust, GATEWAY_ISSUER, clock(), generate=True)
    ensure_keys(tmp_path / "auth", trust, AUTH_ISSUER, clock(), generate=True)
    return tmp_path / "gateway", tmp_path / "auth", trust


def make_signer(keys: Path, clock: Clock, issuer: str = GATEWAY_ISSUER, **kw) -> AssertionSigner:
    return AssertionSigner(
        keys, issuer=issuer, audience=kw.pop("audience", "passgate-internal"),
        lifetime=kw.pop("lifetime", 30), clock=clock,
    )


def make_verifier(trust: Path, clock: Clock, cache_size: int = 100) -> AssertionVerifier:
    return AssertionVerifier(trust, audience="passgate-internal", leeway=5, cache_size=cache_size, clock=clock)


def test_a_signed_assertion_names_the_caller(dirs, clock) -> None:
    gateway, _, trust = dirs
    token = make_signer(gateway, clock).sign(ALICE).token
    assert make_verifier(trust, clock).identity(token) == ALICE


def test_an_assertion_dies_at_its_lifetime_even_when_cached(dirs, clock) -> None:
    gateway, _, trust = dirs
    verifier = make_verifier(trust, clock)
    token = make_signer(gateway, clock).sign(ALICE).token
    assert verifier.identity(token) == ALICE  # now cached
    clock.now += 30 + 5 - 0.001
    assert verifier.identity(token) == ALICE
    clock.now += 0.001
    with pytest.raises(AssertionRefused, match="expired"):
        verifier.identity(token)


def test_an_assertion_never_outlives_what_it_vouches_for(dirs, clock) -> None:
    gateway, _, _ = dirs
    signed = make_signer(gateway, clock).sign(ALICE, not_after=T0 + 10)
    assert signed.expires_at == T0 + 10
    assert jwt.decode(signed.token, options={"verify_signature": False})["exp"] == T0 + 10


@pytest.mark.parametrize(
    ("signer_dir", "issuer", "audience", "reason"),
    [
        ("auth", GATEWAY_ISSUER, "passgate-internal", "issuer"),  # auth's key claiming the gateway
        ("gateway", AUTH_ISSUER, "passgate-internal", "issuer"),
        ("gateway", GATEWAY_ISSUER, "another-audience", "audience"),
    ],
)
def test_keys_are_bound_to_their_issuer_and_the_audience(dirs, clock, signer_dir, issuer, audience, reason) -> None:
    keys = {"gateway": dirs[0], "auth": dirs[1]}[signer_dir]
    token = make_signer(keys, clock, issuer, audience=audience).sign(ALICE).token
    with pytest.raises(AssertionRefused, match=reason):
        make_verifier(dirs[2], clock).identity(token)


def _claims(**overrides) -> dict:
    return {"iss": GATEWAY_ISSUER, "aud": "passgate-internal", "sub": "alice", "scope": "admin",
            "iat": int(T0), "exp": int(T0) + 30, "jti": "j", **overrides}


def _signed_with_gateway_key(gateway: Path, claims: dict, **header) -> str:
    key = read_private_keys(gateway)[0]
    headers = {"kid": key.kid, "typ": "passgate-identity+jwt", **header}
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers=headers)


@pytest.mark.parametrize(
    "make_token",
    [
        lambda g: jwt.encode(_claims(), None, algorithm="none", headers={"typ": "passgate-identity+jwt", "kid": "k"}),
        lambda g: jwt.encode(_claims(), Ed25519PrivateKey.generate(), algorithm="EdDSA",
                             headers={"typ": "passgate-identity+jwt", "kid": "unknown"}),
        lambda g: _signed_with_gateway_key(g, _claims(), typ="at+jwt"),  # another kind of JWT
        lambda g: _signed_with_gateway_key(g, _claims(exp=int(T0) + 61)),  # lives over 60 s
        lambda g: _signed_with_gateway_key(g, _claims(iat=int(T0) + 60, exp=int(T0) + 90)),  # future
        lambda g: _signed_with_gateway_key(g, {k: v for k, v in _claims().items() if k != "sub"}),
        lambda g: _signed_with_gateway_key(g, _claims(sub="")),
        lambda g: "x" * 5000,
        lambda g: "not-a-jwt",
    ],
    ids=["unsigned", "unknown-key", "other-typ", "too-long-lived", "future", "no-sub", "empty-sub",
         "too-long", "garbage"],
)
def test_forged_and_malformed_assertions_are_refused(dirs, clock, make_token) -> None:
    with pytest.raises(AssertionRefused):
        make_verifier(dirs[2], clock).identity(make_token(dirs[0]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), replacement=st.sampled_from(string.ascii_letters + string.digits + "-_."))
def test_no_altered_assertion_names_anyone_else(dirs, clock, position, replacement) -> None:
    """Any one-character change is refused, or (an unused low bit of the base64 text)
    verifies as the very same identity: never another caller or other scopes."""
    gateway, _, trust = dirs
    verifier = make_verifier(trust, clock)
    token = make_signer(gateway, clock).sign(ALICE).token
    assert verifier.identity(token) == ALICE  # the original is cached: the change must miss
    position %= len(token)
    altered = token[:position] + replacement + token[position + 1 :]
    try:
        identity = verifier.identity(altered)
    except AssertionRefused:
        return
    assert identity == ALICE


def test_the_cache_is_bounded(dirs, clock) -> None:
    gateway, _, trust = dirs
    verifier = make_verifier(trust, clock, cache_size=2)
    signer = make_signer(gateway, clock)
    for index in range(5):
        verifier.identity(signer.sign(Identity(f"user-{index}", frozenset())).token)
    assert len(verifier._cache) == 2


def test_rotation_is_trusted_without_a_restart_and_the_old_key_until_its_assertions_end(dirs, clock) -> None:
    gateway, _, trust = dirs
    signer = make_signer(gateway, clock)
    verifier = make_verifier(trust, clock)
    old = signer.sign(ALICE).token
    verifier.identity(old)

    new_key = rotate(gateway, trust, GATEWAY_ISSUER, clock(), lead=60)
    # Published now, but the running signer keeps the old key until the lead is over.
    assert jwt.get_unverified_header(signer.sign(ALICE).token)["kid"] != new_key.kid
    clock.now += 60
    rotated = signer.sign(ALICE).token
    assert jwt.get_unverified_header(rotated)["kid"] == new_key.kid
    assert verifier.identity(rotated) == ALICE  # the same verifier: it re-read the trust set
    assert verifier.identity(signer.sign(ALICE).token) == ALICE

    # The old key stays trusted for the longest assertion's life, then a rotation drops it.
    old_kid = jwt.get_unverified_header(old)["kid"]
    clock.now += RETENTION
    rotate(gateway, trust, GATEWAY_ISSUER, clock(), lead=0)
    kids = {key["kid"] for key in json.loads((trust / "passgate-gateway.jwks.json").read_text())["keys"]}
    assert old_kid not in kids and new_key.kid in kids
    assert old_kid not in {key.kid for key in read_private_keys(gateway)}  # its file is gone too


def test_a_key_removed_from_the_trust_set_stops_vouching(dirs, clock) -> None:
    gateway, _, trust = dirs
    verifier = make_verifier(trust, clock)
    token = make_signer(gateway, clock).sign(ALICE).token
    verifier.identity(token)
    (trust / "passgate-gateway.jwks.json").write_text('{"keys": []}')
    clock.now += 1  # the next uncached verification checks the trust set again
    with pytest.raises(AssertionRefused, match="unknown key"):
        verifier.identity(make_signer(gateway, clock).sign(ALICE).token)
    with pytest.raises(AssertionRefused, match="unknown key"):
        verifier.identity(token)  # and the cache was emptied with it
