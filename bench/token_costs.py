"""What an access token costs per request: bytes on the wire and verification on a cache miss.

The seed's own caveat is that a token sends more bytes than a session id. This measures
both (the header line an authenticated request carries), lists each claim of auth's token
with who reads it, and, for RS256, ES256 and EdDSA, the token's size and PyJWT's verify
cost on a cache miss: the same claims and header signed with a fresh key of each kind.
The verify figure is a micro-measurement (process CPU time over repeated decodes, best of
several rounds), not a load run: it is the cost the gateway's verified-token cache spares
every request after a token's first.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

# Who reads each claim of auth's access token. Backends see the identity only as the
# gateway's X-User-* headers (common.identity): subject, scopes and client id are what
# their handlers use (require_identity, is_admin, the provisioning client check).
CLAIM_READERS: dict[str, str] = {
    "iss": "gateway (issuer check)",
    "aud": "gateway (audience check)",
    "sub": "backends (X-User-Id: owner of orders, the profile)",
    "iat": "gateway (lifetime check: exp - iat)",
    "nbf": "gateway when present; auth sets it equal to iat, so it adds nothing",
    "exp": "gateway (expiry, cache lifetime)",
    "jti": "gateway (required by RFC 9068); sent as X-User-Token-Id, which no backend reads",
    "scope": "gateway (route scopes) and backends (X-User-Scopes: require_identity)",
    "client_id": "backends (X-User-Client-Id: users' provisioning check)",
    "sid": "auth's introspection (RFC 7662): the login's refresh family, so a revoked login's access tokens introspect inactive",
}
HEADER_READERS: dict[str, str] = {
    "alg": "gateway (pinned algorithm)",
    "kid": "gateway (key of the JWKS)",
    "typ": "gateway (at+jwt, RFC 9068)",
}
# The algorithms compared, with a key maker for each: RSA 2048 as auth signs today.
ALGORITHMS: dict[str, Callable[[], Any]] = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}
# What a stateful design's client sends instead: an opaque id of 32 random bytes, as the
# session-lookup baseline (bench.session_proxy) uses.
SESSION_ID_BYTES = 32


def _segment(part: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The header, the claims and the signature's length in characters (not verified)."""
    head, payload, signature = token.split(".")
    return _segment(head), _segment(payload), len(signature)


def authorization_line(credential: str) -> bytes:
    """The header line a request carries for a bearer credential, as sent on the wire."""
    return f"Authorization: Bearer {credential}\r\n".encode()


def request_bytes(path: str, host: str, credential: str) -> int:
    """Bytes of a minimal authenticated GET (request line, Host, Authorization, blank line)."""
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode()
    return len(head) + len(authorization_line(credential)) + 2


def claim_sizes(claims: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each claim, its bytes in the JSON payload ("name":value and a comma), and its reader;
    base64url makes every byte 4/3 of a byte on the wire."""
    return [
        {"claim": name, "json_bytes": len(json.dumps({name: value}, separators=(",", ":"))) - 1,
         "reader": CLAIM_READERS.get(name, "nobody known")}
        for name, value in claims.items()
    ]


def _cpu_seconds_per_call(call: Callable[[], Any], *, rounds: int, min_seconds: float) -> float:
    """Best of `rounds` of process CPU time per call; each round repeats the call for at
    least `min_seconds`. The best round is the one least disturbed by other processes."""
    best = float("inf")
    for _ in range(rounds):
        count, started = 0, time.process_time()
        while True:
            call()
            count += 1
            elapsed = time.process_time() - started
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / count)
    return best


def algorithm_costs(
    token: str, *, audience: str, rounds: int = 5, min_seconds: float = 0.1
) -> dict[str, dict[str, float]]:
    """For each algorithm: the token's characters and signature characters when the same
    header and claims are signed with it, and PyJWT's decode CPU per call with signature,
    issuer, audience and required-claim checks (the gateway's miss path, less its own
    format and time checks)."""
    header, claims, _ = token_parts(token)
    extra_header = {k: v for k, v in header.items() if k not in ("alg",)}
    found = {}
    for alg, make_key in ALGORITHMS.items():
        key = make_key()
        signed = jwt.encode(claims, key, algorithm=alg, headers=extra_header)
        public = key.public_key()

        def verify(signed: str = signed, public: Any = public, alg: str = alg) -> None:
            jwt.decode(signed, public, algorithms=[alg], audience=audience, issuer=claims["iss"],
                       options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"],
                                "verify_exp": False, "verify_nbf": False, "verify_iat": False})

        verify()  # fails loudly here, not in the timing loop
        found[alg] = {
            "token_chars": len(signed),
            "signature_chars": len(signed.rsplit(".", 1)[1]),
            "verify_us": _cpu_seconds_per_call(verify, rounds=rounds, min_seconds=min_seconds) * 1e6,
        }
    return found


@dataclasses.dataclass(frozen=True)
class TokenFigures:
    token_chars: int
    session_id_chars: int
    token_line_bytes: int
    session_line_bytes: int
    token_request_bytes: int
    session_request_bytes: int
    header: dict[str, Any]
    claims: list[dict[str, Any]]
    algorithms: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure(token: str, *, audience: str, host: str = "127.0.0.1:8080", path: str = "/orders",
            rounds: int = 5, min_seconds: float = 0.1) -> TokenFigures:
    """Every figure of item 9 for one of auth's real access tokens."""
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    header, claims, _ = token_parts(token)
    return TokenFigures(
        token_chars=len(token),
        session_id_chars=len(session_id),
        token_line_bytes=len(authorization_line(token)),
        session_line_bytes=len(authorization_line(session_id)),
        token_request_bytes=request_bytes(path, host, token),
        session_request_bytes=request_bytes(path, host, session_id),
        header={name: {"value": value, "reader": HEADER_READERS.get(name, "nobody known")}
                for name, value in header.items()},
        claims=claim_sizes(claims),
        algorithms=algorithm_costs(token, audience=audience, rounds=rounds, min_seconds=min_seconds),
    )
