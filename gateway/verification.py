"""Access-token checks (RFC 9068 profile, RFC 8725 practices) and the verified-token cache.

Checks, in order: one `Authorization: Bearer` header (never a query parameter or cookie);
header `alg` in the pinned asymmetric list and equal to the key's; `typ` at+jwt; a known
`kid`; the signature; `iss`; `aud`; `exp`, `iat`, `sub`, `jti` present; `exp` not past,
`nbf` not future, `iat` not future (all within the leeway); lifetime `exp - iat` at most
the maximum. PyJWT does the signature, `iss`, `aud` and presence checks; the time checks
are done here against the injected clock, so tests never sleep.

A verified token is cached until it expires (or its key leaves the key set), so a repeated
token costs a hash and a dictionary lookup instead of an RSA verification. The cache is
keyed by the BLAKE2b-128 digest of the token's exact text: 16 bytes instead of the 800-byte
token, and finding another text with the same key is a second preimage of a cryptographic
hash (2^128 work), so no forged or altered token can be taken for a cached one. BLAKE2b
rather than SHA-256 because CPython computes it itself: SHA-256 goes through OpenSSL's
EVP layer, whose set-up per call cost more than hashing the token (28k against 15k
instructions for an 800-byte token, callgrind).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable

import jwt
from aiohttp import web
from jwt import exceptions as jwt_errors

from common.timestamps import EpochClock
from common.errors import Problem, unauthorized
from common.identity import Identity
from gateway.jwks import JwksClient, KeysUnavailableError, UnknownKeyIdError
from gateway.metrics import GatewayMetrics
from gateway.routes import DEFAULT_ISSUER

MAX_TOKEN_LENGTH = 8192
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 section 2.1
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
_DECODE_OPTIONS = {
    "require": REQUIRED_CLAIMS,
    # Time claims are checked below against the injected clock.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}
# RFC 7515 section 7.1: three base64url segments, no padding (section 2); the signature may
# be empty so that an unsigned token is refused for its algorithm. PyJWT also takes trailing
# '=' and ignores unused low bits, which would give one token many spellings, each a
# different key for the cache, a deny list or a log search.
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
# Claim values become upstream header values: visible ASCII only, bounded.
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]{1,256}$")
_SCOPE_SAFE = re.compile(r"^[\x20-\x7e]{0,2048}$")


class TokenError(Exception):
    """A refused token: `reason` is the metric label, `detail` the client-facing text."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(slots=True, eq=False)
class Verified:
    """A verified token: who it names, and the identity header lines sent upstream for it
    (made once per token, not once per request)."""

    identity: Identity
    valid_until: float  # exp + leeway: the entry dies with the token
    kid: str
    fields: str
    # Every verified claim, for routes that forward some as headers (gateway.claims).
    claims: dict[str, object] = dataclasses.field(default_factory=dict)
    # The fields plus the signed identity assertion, and when to re-sign it
    # (gateway.assertion): mutable, so the hot path reads them off the cache entry.
    upstream_fields: str = ""
    renew_at: float = 0.0

    @classmethod
    def of(
        cls, identity: Identity, valid_until: float, kid: str, claims: dict[str, object] | None = None
    ) -> Verified:
        lines = "".join(f"{name}: {value}\r\n" for name, value in identity.to_headers().items())
        return cls(identity, valid_until, kid, lines, claims or {})


class TokenVerifier:
    """Verify access tokens against one issuer's keys; cache what verified.

    Each trusted issuer has its own verifier, so its own cache: an entry is found only by
    the verifier of the issuer that vouched for it (the key is, in effect, issuer and token).
    """

    def __init__(
        self,
        jwks: JwksClient,
        *,
        name: str = DEFAULT_ISSUER,
        issuer: str,
        audience: str,
        algorithms: Iterable[str],
        leeway: float,
        max_lifetime: float,
        cache_size: int,
        clock: EpochClock,
        metrics: GatewayMetrics,
        known_scopes: frozenset[str] | None = None,
    ) -> None:
        self._jwks = jwks
        self.name = name
        self.issuer = issuer
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._cache_size = cache_size
        self._cache: collections.OrderedDict[bytes, Verified] = collections.OrderedDict()
        self._clock = clock
        self._metrics = metrics
        self._known_scopes = known_scopes

    def reset(self, known_scopes: frozenset[str]) -> None:
        """A new scope list (a reloaded routes file): forget identities cut to the old one."""
        self._known_scopes = known_scopes
        self._cache.clear()

    async def verify(self, token: str) -> Verified:
        """The identity the token proves, or raise TokenError / KeysUnavailableError."""
        now = self._clock()
        if self._cache_size:
            key = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            entry = self._cache.get(key)
            if entry is not None:
                if now < entry.valid_until and self._jwks.usable(entry.kid, now):
                    self._metrics.cache_hit.inc()
                    return entry
                del self._cache[key]
            self._metrics.cache_miss.inc()
        identity, exp, kid, claims = await self.verify_signed(token, now)
        verified = Verified.of(identity, exp + self._leeway, kid, claims)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.popitem(last=False)  # oldest first; tokens are short-lived anyway
            self._cache[key] = verified
        return verified

    async def verify_signed(
        self, token: str, now: float
    ) -> tuple[Identity, float, str, dict[str, object]]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("malformed", "the token is too long")
        if not _COMPACT_JWS.match(token) or not all(map(_canonical, token.split("."))):
            raise TokenError("malformed", "the token is not a well-formed JWT")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt_errors.InvalidTokenError, RecursionError):
            raise TokenError("malformed", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        # Pinned algorithms (RFC 8725 section 3.1): 'none' and HS* never get near a key.
        # Every member is checked for its JSON type before any use: any other shape is a
        # malformed token, never an error of the gateway's.
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError("bad_algorithm", "the token's signing algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise TokenError("bad_type", "the token is not an access token (typ must be at+jwt)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("unknown_kid", "the token names no signing key (kid)")
        try:
            key = await self._jwks.get_key(kid)
        except UnknownKeyIdError:
            raise TokenError("unknown_kid", "the token was signed by an unknown key") from None
        if key.algorithm_name != alg:
            raise TokenError("bad_algorithm", "the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options=_DECODE_OPTIONS,  # type: ignore[arg-type]
            )
        except jwt_errors.MissingRequiredClaimError as exc:
            raise TokenError("missing_claim", f"the token lacks the {exc.claim!r} claim") from None
        except jwt_errors.InvalidSignatureError:
            raise TokenError("bad_signature", "the token's signature does not verify") from None
        except jwt_errors.InvalidIssuerError:
            raise TokenError("bad_issuer", "the token was issued by another issuer") from None
        except jwt_errors.InvalidAudienceError:
            raise TokenError("bad_audience", "the token is meant for another audience") from None
        except jwt_errors.InvalidAlgorithmError:
            raise TokenError("bad_algorithm", "the token's signing algorithm is not accepted") from None
        except (jwt_errors.InvalidTokenError, RecursionError):
            raise TokenError("malformed", "the token is not a well-formed JWT") from None
        exp = self._check_times(claims, now)
        return self._identity(claims), exp, kid, claims

    def _check_times(self, claims: dict[str, object], now: float) -> float:
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf")
        for name, value in (("exp", exp), ("iat", iat), ("nbf", nbf)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise TokenError("malformed", f"the token's {name} claim is not a finite number")
        assert isinstance(exp, (int, float)) and isinstance(iat, (int, float))
        leeway = self._leeway
        if now >= exp + leeway:
            raise TokenError("expired", "the token has expired")
        if isinstance(nbf, (int, float)) and nbf > now + leeway:
            raise TokenError("not_yet_valid", "the token is not valid yet (nbf)")
        if iat > now + leeway:
            raise TokenError("issued_in_future", "the token was issued in the future (iat)")
        if exp - iat > self._max_lifetime:
            raise TokenError("lifetime_exceeded", "the token's lifetime exceeds the maximum")
        return float(exp)

    def _identity(self, claims: dict[str, object]) -> Identity:
        sub, jti = claims["sub"], claims["jti"]
        client_id, scope = claims.get("client_id"), claims.get("scope", "")
        if not (isinstance(sub, str) and _HEADER_SAFE.match(sub)):
            raise TokenError("malformed", "the token's sub claim is not acceptable")
        if not (isinstance(jti, str) and _HEADER_SAFE.match(jti)):
            raise TokenError("malformed", "the token's jti claim is not acceptable")
        if client_id is not None and not (isinstance(client_id, str) and _HEADER_SAFE.match(client_id)):
            raise TokenError("malformed", "the token's client_id claim is not acceptable")
        if not (isinstance(scope, str) and _SCOPE_SAFE.match(scope)):
            raise TokenError("malformed", "the token's scope claim is not acceptable")
        scopes = frozenset(scope.split())
        if self._known_scopes is not None:
            # Only scopes a token can legitimately carry reach a backend (never, say,
            # profiles:provision, which only auth itself uses, inside the mesh).
            scopes &= self._known_scopes
        return Identity(
            subject=sub, scopes=scopes, client_id=client_id, token_id=jti, issuer=self.name
        )


def _canonical(segment: str) -> bool:
    """True when the segment is the one base64url spelling of its bytes."""
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") == segment


def bearer_token(request: web.Request) -> str | None:
    """The token of the one `Authorization: Bearer` header (RFC 6750 section 2.1), if any.

    Query parameters and cookies are never looked at (RFC 6750 sections 2.2-2.3 are not
    supported): those leak into logs, caches and Referer headers.
    """
    values = request.headers.getall("Authorization", ())
    if not values:
        return None
    if len(values) > 1:
        raise TokenError("malformed", "send exactly one Authorization header")
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        raise TokenError("malformed", "the Bearer token is empty")
    return token


async def authenticate(
    request: web.Request, verifier: TokenVerifier, metrics: GatewayMetrics
) -> Verified:
    """The caller's verified identity, or a 401 (RFC 6750 section 3) / 503 problem."""
    try:
        token = bearer_token(request)
        if token is None:
            metrics.auth_failure["missing_token"].inc()
            raise unauthorized(
                "this request needs an access token: Authorization: Bearer <token>",
                token_presented=False,
                reason="missing_token",
            )
        return await verifier.verify(token)
    except TokenError as error:
        metrics.auth_failure[error.reason].inc()
        raise unauthorized(error.detail, reason=error.reason) from None
    except KeysUnavailableError:
        metrics.auth_failure["keys_unavailable"].inc()
        raise Problem(
            503,
            "tokens cannot be verified right now: the issuer's keys are unavailable",
            kind="keys-unavailable",
            headers={"Retry-After": "5"},
        ) from None
