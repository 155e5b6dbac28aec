"""The internal identity assertion: a short-lived JWT a caller signs to vouch for who is calling.

The gateway signs one per verified access token (Ory Oathkeeper's id_token mutator); auth
signs one for its provisioning call to users. Backends take the caller's identity only from
a valid assertion: signed by a key of their trust set (common.assertion_keys), `iss` the
issuer that key is bound to, `aud` their internal audience, `typ` this profile's (so no other
JWT can be passed off as one, RFC 8725 section 3.11), and `exp` not past. A process that can
reach a backend but holds no assertion key cannot vouch for anyone, whatever headers it sends.

Claims: iss, aud, sub, scope (space-separated), client_id, token_jti (the access token's
jti), token_issuer (the name of the trusted issuer that vouched for the access token), iat,
exp (at most 60 s after iat), jti.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import jwt
from aiohttp import web
from jwt import exceptions as jwt_errors

from common.assertion_keys import (
    ALGORITHM,
    MAX_ASSERTION_LIFETIME,
    PrivateKeyRing,
    TrustedKeys,
    ensure_keys,
)
from common.identity import ASSERTION_HEADER, ASSERTION_VERIFIER, AssertionRefused, Identity
from common.settings import AssertionSigningSettings, AssertionTrustSettings

__all__ = ["ASSERTION_HEADER", "AssertionRefused", "AssertionSigner", "AssertionVerifier"]
ASSERTION_TYPE = "passgate-identity+jwt"
GATEWAY_ISSUER = "passgate-gateway"
AUTH_ISSUER = "passgate-auth"
INTERNAL_AUDIENCE = "passgate-internal"
MAX_ASSERTION_LENGTH = 4096
TRUST_CHECK_INTERVAL = 1.0  # seconds between trust-directory checks on the uncached path
_LOGGER = logging.getLogger(__name__)
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti"]
_OPTIONS = {"require": _REQUIRED, "verify_exp": False, "verify_iat": False, "verify_nbf": False}


@dataclasses.dataclass(frozen=True, slots=True)
class SignedAssertion:
    token: str
    issued_at: float
    expires_at: float


class AssertionSigner:
    """Signs assertions with the newest key of a private key directory, re-read on change."""

    def __init__(
        self, keys_dir: Path, *, issuer: str, audience: str, lifetime: float, clock: Callable[[], float]
    ) -> None:
        if not 0 < lifetime <= MAX_ASSERTION_LIFETIME:
            raise ValueError(f"an assertion lifetime is 1 to {MAX_ASSERTION_LIFETIME:g} seconds")
        self.ring = PrivateKeyRing(keys_dir)
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self.clock = clock

    def sign(self, identity: Identity, *, not_after: float | None = None) -> SignedAssertion:
        """An assertion for `identity`, ending at `not_after` when that comes first (the
        access token's own end: an assertion never outlives what it vouches for)."""
        self.ring.refresh()  # a stat: signing is the cache-miss path, once per token per half-life
        now = self.clock()
        key = self.ring.signing_key(now)
        expires = now + self.lifetime if not_after is None else min(now + self.lifetime, not_after)
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.subject,
            "scope": " ".join(sorted(identity.scopes)),
            "iat": int(now),
            "exp": int(expires),
            "jti": secrets.token_urlsafe(12),
        }
        if identity.client_id:
            claims["client_id"] = identity.client_id
        if identity.token_id:
            claims["token_jti"] = identity.token_id
        if identity.issuer:
            claims["token_issuer"] = identity.issuer
        headers = {"kid": key.kid, "typ": ASSERTION_TYPE}
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)
        return SignedAssertion(token, now, float(int(expires)))


class AssertionVerifier:
    """A backend's check of the assertion, with a bounded cache of verified ones.

    The cache is keyed by the BLAKE2b-128 digest of the assertion's exact text (as the
    gateway's token cache is, gateway.verification): a repeated assertion costs a hash and a
    lookup instead of an Ed25519 verification, and no other text can take a cached one's
    place without a second preimage of the hash.
    """

    def __init__(
        self,
        trust_dir: Path,
        *,
        audience: str,
        leeway: float,
        cache_size: int,
        clock: Callable[[], float],
    ) -> None:
        self.trusted = TrustedKeys(trust_dir)
        self.audience = audience
        self.leeway = leeway
        self.cache_size = cache_size
        self.clock = clock
        self._cache: collections.OrderedDict[bytes, tuple[Identity, float]] = collections.OrderedDict()
        self._checked_at = clock()

    def identity(self, token: str) -> Identity:
        now = self.clock()
        key = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        entry = self._cache.get(key)
        if entry is not None:
            if now < entry[1]:
                return entry[0]
            del self._cache[key]
        identity, valid_until = self._verify(token, now)
        if self.cache_size:
            if len(self._cache) >= self.cache_size:
                self._cache.popitem(last=False)  # oldest first: every entry dies within 60 s anyway
            self._cache[key] = (identity, valid_until)
        return identity

    def _refresh(self) -> None:
        if self.trusted.changed():
            self.trusted.reload()
            self._cache.clear()  # a key taken out of the set must stop vouching now

    def _key_for(self, kid: str, now: float) -> tuple[str, object]:
        # The trust set is re-read when an assertion names a kid not held (a rotation: the
        # new key was published before it signs), and otherwise checked at most once a
        # second on this uncached path, so a key removed from the set (revoked) stops
        # being trusted within a second of the next new assertion. Cached hits never stat.
        found = self.trusted.keys.get(kid)
        if found is None or now - self._checked_at >= TRUST_CHECK_INTERVAL:
            self._checked_at = now
            self._refresh()
            found = self.trusted.keys.get(kid)
        if found is None:
            raise AssertionRefused("the identity assertion is signed by an unknown key")
        return found

    def _verify(self, token: str, now: float) -> tuple[Identity, float]:
        if len(token) > MAX_ASSERTION_LENGTH:
            raise AssertionRefused("the identity assertion is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.InvalidTokenError:
            raise AssertionRefused("the identity assertion is malformed") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or header.get("typ") != ASSERTION_TYPE or not isinstance(kid, str):
            raise AssertionRefused("the identity assertion is not a Passgate identity assertion")
        issuer, public_key = self._key_for(kid, now)
        try:
            claims = jwt.decode(
                token,
                public_key,  # type: ignore[arg-type]
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=issuer,
                options=_OPTIONS,
            )
        except jwt_errors.InvalidAudienceError:
            raise AssertionRefused("the identity assertion is for another audience") from None
        except jwt_errors.InvalidIssuerError:
            raise AssertionRefused("the identity assertion's issuer does not hold its key") from None
        except jwt_errors.InvalidTokenError:
            raise AssertionRefused("the identity assertion's signature or claims are invalid") from None
        exp, iat = claims["exp"], claims["iat"]
        if not all(isinstance(value, int | float) for value in (exp, iat)):
            raise AssertionRefused("the identity assertion's times are not numbers")
        if exp - iat > MAX_ASSERTION_LIFETIME:
            raise AssertionRefused("the identity assertion lives longer than 60 seconds")
        if now >= exp + self.leeway:
            raise AssertionRefused("the identity assertion has expired")
        if iat > now + self.leeway:
            raise AssertionRefused("the identity assertion is issued in the future")
        sub, scope = claims["sub"], claims.get("scope", "")
        client_id, token_id = claims.get("client_id"), claims.get("token_jti")
        token_issuer = claims.get("token_issuer")
        if not isinstance(sub, str) or not sub or not isinstance(scope, str):
            raise AssertionRefused("the identity assertion names no subject")
        identity = Identity(
            sub,
            frozenset(scope.split()),
            client_id if isinstance(client_id, str) else None,
            token_id if isinstance(token_id, str) else None,
            token_issuer if isinstance(token_issuer, str) else None,
        )
        return identity, exp + self.leeway


def install_verifier(app: web.Application, settings: AssertionTrustSettings) -> None:
    """Let require_identity accept assertions signed by the trust directory's keys.

    Without a trust directory nothing is installed and every identity is refused (401):
    a backend never falls back to trusting plain headers.
    """
    if settings.trust_dir is None:
        warn_at_start(app, "no PASSGATE_ASSERTION_TRUST_DIR: every request needing an identity is refused")
        return
    app[ASSERTION_VERIFIER] = AssertionVerifier(
        settings.trust_dir,
        audience=settings.audience,
        leeway=settings.leeway_seconds,
        cache_size=settings.cache_size,
        clock=time.time,
    )


def warn_at_start(app: web.Application, message: str) -> None:
    """Log `message` when the app starts, once logging is set up (JSON lines), not while
    the app is being built."""

    async def warn(app: web.Application) -> None:
        _LOGGER.warning(message)

    app.on_startup.append(warn)


def signer_from_settings(
    settings: AssertionSigningSettings, *, issuer: str, clock: Callable[[], float] = time.time
) -> AssertionSigner | None:
    """The signer of a component's settings (None without a key directory), creating the
    first key when the generate switch allows it (blocking file I/O: call it at start)."""
    if settings.keys_dir is None:
        return None
    ensure_keys(settings.keys_dir, settings.trust_dir, issuer, clock(), generate=settings.generate)
    return AssertionSigner(
        settings.keys_dir,
        issuer=issuer,
        audience=settings.audience,
        lifetime=settings.lifetime_seconds,
        clock=clock,
    )
