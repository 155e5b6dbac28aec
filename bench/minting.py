"""Mint many distinct valid access tokens with auth's own key-loading and minting code.

Logging in 100,000 times would cost 100,000 Argon2 hashes; instead the bench loads the
stack's signing keys the way the auth service does (KeyRing over the key directory) and
signs with auth's AccessTokenMinter, so the tokens are exactly what auth issues. Only the bench
does this, with the key directory of the throwaway stack it started.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import uuid
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_SERVICE = None  # the AccessTokenMinter of a pool worker


def token_service(auth_env: Mapping[str, str]):  # -> tokens.minter.AccessTokenMinter
    from services.auth.keyring.signing_keys import KeyRing
    from services.auth.settings import AuthSettings
    from services.auth.tokens.minter import AccessTokenMinter

    settings = AuthSettings.from_env(auth_env)
    ring = KeyRing(settings.signing_keys_dir, dt.timedelta(seconds=settings.key_retention))
    ring.load()
    return AccessTokenMinter(settings, ring, clock=lambda: dt.datetime.now(dt.UTC))


def _init_worker(auth_env: Mapping[str, str], cores: frozenset[int] | None) -> None:
    global _SERVICE
    if cores:
        os.sched_setaffinity(0, cores)
    _SERVICE = token_service(auth_env)


def _mint_batch(count: int) -> list[str]:
    from common.scopes import default_scope_policy
    from services.auth.tokens.minter import FIRST_PARTY_CLIENT_ID

    assert _SERVICE is not None
    scopes = default_scope_policy().role_scopes("user")
    # A distinct subject per token: 100,000 tokens are 100,000 different users.
    return [
        _SERVICE.access_token(str(uuid.uuid4()), scopes, FIRST_PARTY_CLIENT_ID).access_token
        for _ in range(count)
    ]


def mint_tokens(
    auth_env: Mapping[str, str], count: int, *, workers: int = 2, cores: frozenset[int] | None = None
) -> list[str]:
    """`count` distinct tokens for distinct users (RSA signing: about 0.3 ms each, so
    spread over `workers` processes, allowed on `cores`)."""
    batch = 2000
    sizes = [min(batch, count - start) for start in range(0, count, batch)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(dict(auth_env), cores)) as pool:
        return [token for tokens in pool.map(_mint_batch, sizes) for token in tokens]


def write_tokens(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path


def gateway_state_bytes(tokens: list[str]) -> tuple[float, float]:
    """Bytes one verified-token cache entry and one rate-limit bucket take in the gateway,
    measured with tracemalloc on real tokens, built the way the gateway builds them
    (gateway.verification caches a Verified by the BLAKE2b-128 digest of the token: the
    identity, every claim, and once a request has used it the identity header lines with
    their signed assertion, gateway.assertion; gateway.ratelimit keeps one bucket per
    route and caller)."""
    import collections
    import hashlib
    import shutil
    import tempfile
    import time
    import tracemalloc

    import jwt

    from common.assertion import GATEWAY_ISSUER, INTERNAL_AUDIENCE, AssertionSigner
    from common.assertion_keys import ensure_keys
    from common.identity import Identity
    from gateway.assertion import UpstreamIdentity
    from gateway.ratelimit import MemoryBuckets
    from gateway.routes import RateLimit
    from gateway.verification import Verified

    keys = Path(tempfile.mkdtemp(prefix="passgate-bench-keys-"))
    ensure_keys(keys / "keys", keys / "trust", GATEWAY_ISSUER, time.time(), generate=True)
    upstream = UpstreamIdentity(AssertionSigner(keys / "keys", issuer=GATEWAY_ISSUER, audience=INTERNAL_AUDIENCE,
                                                lifetime=30, clock=time.time), time.time)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        cache: collections.OrderedDict[bytes, object] = collections.OrderedDict()
        for token in tokens:
            text = token.encode().decode()  # a fresh string, as read from a request header
            claims = jwt.decode(text, options={"verify_signature": False})
            identity = Identity(subject=claims["sub"], scopes=frozenset(claims["scope"].split()),
                                client_id=claims.get("client_id"), token_id=claims["jti"])
            verified = Verified.of(identity, float(claims["exp"]) + 30.0, "kid", claims)
            upstream.fields(verified)
            cache[hashlib.blake2b(text.encode(), digest_size=16).digest()] = verified
        entry = (tracemalloc.get_traced_memory()[0] - base) / len(tokens)
        base = tracemalloc.get_traced_memory()[0]
        buckets = MemoryBuckets(clock=lambda: 0.0)
        limit = RateLimit(600, 60.0, 120)
        for claims_token in tokens:
            sub = jwt.decode(claims_token, options={"verify_signature": False})["sub"]
            buckets.take(f"orders-list:sub:{sub}", limit)
        bucket = (tracemalloc.get_traced_memory()[0] - base) / len(tokens)
        del cache, buckets
    finally:
        tracemalloc.stop()
        shutil.rmtree(keys, ignore_errors=True)
    return entry, bucket
