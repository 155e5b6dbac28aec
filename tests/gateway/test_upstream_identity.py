"""The gateway's upstream identity: one signature per verified token per half-lifetime."""

from __future__ import annotations

from pathlib import Path

import jwt

from common.assertion import GATEWAY_ISSUER, AssertionSigner, AssertionVerifier
from common.assertion_keys import ensure_keys
from common.identity import ASSERTION_HEADER, Identity
from gateway.assertion import UpstreamIdentity
from gateway.verification import Verified

T0 = 1_900_000_000.0


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def assertion_of(fields: str) -> str:
    (line,) = [line for line in fields.split("\r\n") if line.startswith(f"{ASSERTION_HEADER}: ")]
    return line.split(": ", 1)[1]


def test_the_assertion_is_signed_once_and_re_signed_at_half_its_lifetime(tmp_path: Path) -> None:
    clock = Clock()
    ensure_keys(tmp_path / "keys", tmp_path / "trust", GATEWAY_ISSUER, T0, generate=True)
    signer = AssertionSigner(tmp_path / "keys", issuer=GATEWAY_ISSUER, audience="passgate-internal",
                             lifetime=30, clock=clock)
    upstream = UpstreamIdentity(signer, clock)
    identity = Identity("alice", frozenset({"orders:read"}), "web", "jti-1")
    verified = Verified.of(identity, T0 + 600, "kid")

    first = upstream.fields(verified)
    assert first.startswith(verified.fields)  # the plain fields are still sent, for logs
    clock.now += 14.9
    assert upstream.fields(verified) is first  # a cache hit: no new signature
    clock.now += 0.1
    second = upstream.fields(verified)
    assert assertion_of(second) != assertion_of(first)

    verifier = AssertionVerifier(tmp_path / "trust", audience="passgate-internal", leeway=0,
                                 cache_size=10, clock=clock)
    assert verifier.identity(assertion_of(second)) == identity
    claims = jwt.decode(assertion_of(second), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 30


def test_the_assertion_ends_with_the_access_token(tmp_path: Path) -> None:
    clock = Clock()
    ensure_keys(tmp_path / "keys", None, GATEWAY_ISSUER, T0, generate=True)
    signer = AssertionSigner(tmp_path / "keys", issuer=GATEWAY_ISSUER, audience="passgate-internal",
                             lifetime=30, clock=clock)
    verified = Verified.of(Identity("bob", frozenset()), T0 + 8, "kid")
    claims = jwt.decode(assertion_of(UpstreamIdentity(signer, clock).fields(verified)),
                        options={"verify_signature": False})
    assert claims["exp"] == T0 + 8


def test_the_assertion_names_the_issuer_that_vouched(tmp_path: Path) -> None:
    clock = Clock()
    ensure_keys(tmp_path / "keys", tmp_path / "trust", GATEWAY_ISSUER, T0, generate=True)
    signer = AssertionSigner(tmp_path / "keys", issuer=GATEWAY_ISSUER, audience="passgate-internal",
                             lifetime=30, clock=clock)
    identity = Identity("machine-1", frozenset({"orders:read"}), "partner-client", "jti-9", "partner")
    fields = UpstreamIdentity(signer, clock).fields(Verified.of(identity, T0 + 600, "kid"))
    assert "X-User-Issuer: partner\r\n" in fields
    token = assertion_of(fields)
    assert jwt.decode(token, options={"verify_signature": False})["token_issuer"] == "partner"
    verifier = AssertionVerifier(tmp_path / "trust", audience="passgate-internal", leeway=0,
                                 cache_size=10, clock=clock)
    assert verifier.identity(token).issuer == "partner"
