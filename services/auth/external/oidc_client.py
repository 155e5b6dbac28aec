"""Relying-party protocol for one external OpenID Connect provider, on Authlib and joserfc.

Authlib builds the requests (authorization URL, token request, PKCE S256 challenge, client
authentication) and validates the ID token's claims (`authlib.oidc.core.CodeIDToken`: iss,
aud, azp, exp, iat, nonce, at_hash); joserfc, Authlib's JOSE implementation (its
`authlib.jose` is deprecated in favour of it), verifies the signature against the provider's
JWKS with the algorithms pinned. This module only fetches documents over aiohttp and
caches them: discovery (OpenID Connect Discovery 1.0) and the key set, refreshed once when
a token names a key id the cache does not know (the provider rotated its keys).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from typing import Any

import aiohttp
from authlib.oauth2.auth import encode_client_secret_basic, encode_client_secret_post
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from common.timestamps import Clock
from services.auth.external.config import OidcProvider, OidcSettings, acceptable_url

_LOGGER = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 512 * 1024
# A token naming an unknown key id refetches the key set, but not more often than this:
# otherwise made-up key ids would turn every callback into a request to the provider.
JWKS_MIN_REFRESH = dt.timedelta(seconds=30)
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


class OidcError(Exception):
    """The provider could not be used or its answer is refused.

    `reason` is a bounded label for metrics and logs; the message never holds a token.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    token_auth_method: str


@dataclasses.dataclass(frozen=True, slots=True)
class _ClientCredentials:
    """What Authlib's client-authentication helpers read."""

    client_id: str
    client_secret: str = dataclasses.field(repr=False)


class OidcClient:
    """One configured provider: discovery, authorization URL, code exchange, ID token."""

    def __init__(
        self,
        provider: OidcProvider,
        settings: OidcSettings,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.session = session
        self.clock = clock
        self._metadata: ProviderMetadata | None = None
        self._metadata_at: dt.datetime | None = None
        self._keys: KeySet | None = None
        self._keys_at: dt.datetime | None = None
        self._lock = asyncio.Lock()

    # -- documents -------------------------------------------------------------------

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self.session.get(
                url, headers={"Accept": "application/json"}, allow_redirects=False
            ) as response:
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            raise OidcError("provider_unavailable", f"{what}: {type(error).__name__}") from None
        if status != 200 or len(body) > MAX_DOCUMENT_BYTES:
            raise OidcError("provider_unavailable", f"{what}: HTTP {status}")
        try:
            document = json.loads(body)
        except ValueError:
            raise OidcError("provider_unavailable", f"{what}: not JSON") from None
        if not isinstance(document, dict):
            raise OidcError("provider_unavailable", f"{what}: not a JSON object")
        return document

    def _fresh(self, fetched_at: dt.datetime | None) -> bool:
        ttl = dt.timedelta(seconds=self.settings.metadata_ttl)
        return fetched_at is not None and self.clock() < fetched_at + ttl

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, checked, from cache while fresh (one fetch at a time)."""
        if self._metadata is not None and self._fresh(self._metadata_at):
            return self._metadata
        async with self._lock:
            if self._metadata is None or not self._fresh(self._metadata_at):
                url = self.provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
                self._metadata = self._check_metadata(await self._get_json(url, "discovery"))
                self._metadata_at = self.clock()
            return self._metadata

    def _check_metadata(self, document: dict[str, Any]) -> ProviderMetadata:
        # Discovery 4.3: the issuer in the document must be exactly the one configured,
        # or a document from elsewhere could name other endpoints and keys (mix-up).
        if document.get("issuer") != self.provider.issuer:
            raise OidcError("provider_misconfigured", "discovery names another issuer")
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not acceptable_url(value.split("?")[0]):
                raise OidcError("provider_misconfigured", f"discovery: {name} is unusable")
            endpoints[name] = value
        if "code" not in document.get("response_types_supported", ["code"]):
            raise OidcError("provider_misconfigured", "the provider has no code flow")
        challenge_methods = document.get("code_challenge_methods_supported")
        if isinstance(challenge_methods, list) and "S256" not in challenge_methods:
            raise OidcError("provider_misconfigured", "the provider does not support PKCE S256")
        offered = document.get("id_token_signing_alg_values_supported", ["RS256"])
        algorithms = tuple(a for a in self.provider.algorithms if a in offered)
        if not algorithms:
            raise OidcError("provider_misconfigured", "no ID-token algorithm in common")
        methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        method = "client_secret_basic" if "client_secret_basic" in methods else None
        if method is None and "client_secret_post" in methods:
            method = "client_secret_post"
        if method is None:
            raise OidcError("provider_misconfigured", "no client authentication in common")
        return ProviderMetadata(
            issuer=self.provider.issuer,
            algorithms=algorithms,
            token_auth_method=method,
            **endpoints,
        )

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        metadata = await self.metadata()
        async with self._lock:
            stale = not self._fresh(self._keys_at)
            may_refresh = self._keys_at is None or self.clock() >= self._keys_at + JWKS_MIN_REFRESH
            if self._keys is None or stale or (refresh and may_refresh):
                document = await self._get_json(metadata.jwks_uri, "jwks")
                try:
                    self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError):
                    raise OidcError("provider_misconfigured", "jwks: not a JWK Set") from None
                self._keys_at = self.clock()
            return self._keys

    # -- the flow --------------------------------------------------------------------

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        """Authorization request (Core 3.1.2.1) with PKCE S256 (RFC 7636 4.3)."""
        metadata = await self.metadata()
        return prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=self.provider.client_id,
            response_type="code",
            redirect_uri=self.settings.redirect_uri(self.provider),
            scope=list(self.provider.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )

    async def exchange_code(self, code: str, code_verifier: str) -> dict[str, Any]:
        """Token request (RFC 6749 4.1.3 + RFC 7636 4.5); the provider's token response."""
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=self.settings.redirect_uri(self.provider),
            code_verifier=code_verifier,
        )
        credentials = _ClientCredentials(self.provider.client_id, self.provider.client_secret)
        encode = (
            encode_client_secret_basic
            if metadata.token_auth_method == "client_secret_basic"
            else encode_client_secret_post
        )
        _, headers, body = encode(credentials, "POST", metadata.token_endpoint, dict(FORM), body)
        try:
            async with self.session.post(
                metadata.token_endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(MAX_DOCUMENT_BYTES + 1)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            raise OidcError("provider_unavailable", f"token: {type(error).__name__}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            # RFC 6749 5.2: `error` is a short ASCII code, safe to log; nothing else is.
            code_name = answer.get("error") if isinstance(answer, dict) else None
            raise OidcError(
                "token_exchange_failed", f"token endpoint: HTTP {status} {str(code_name)[:40]}"
            )
        if not isinstance(answer.get("id_token"), str):
            raise OidcError("token_exchange_failed", "the token response has no id_token")
        return answer

    async def verify_id_token(
        self, id_token: str, *, nonce: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """Verify signature and claims (Core 3.1.3.7); the claims, or OidcError."""
        metadata = await self.metadata()
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=list(metadata.algorithms))
            except InvalidKeyIdError:
                # A key id we have not seen: the provider may have rotated. Refetch once.
                keys = await self._key_set(refresh=True)
                token = jwt.decode(id_token, keys, algorithms=list(metadata.algorithms))
            claims = CodeIDToken(
                token.claims,
                token.header,
                options={
                    "iss": {"essential": True, "value": metadata.issuer},
                    "aud": {"essential": True, "value": self.provider.client_id},
                    "sub": {"essential": True},
                },
                params={
                    "nonce": nonce,
                    "client_id": self.provider.client_id,
                    "access_token": access_token,
                },
            )
            claims.validate(now=int(self.clock().timestamp()), leeway=self.settings.leeway)
        except JoseError as error:
            # The error names a claim or a check, never a value.
            raise OidcError("id_token_invalid", f"ID token refused: {error.error}") from None
        if not isinstance(claims.get("sub"), str) or not 1 <= len(claims["sub"]) <= 255:
            raise OidcError("id_token_invalid", "ID token refused: sub")
        return dict(claims)
