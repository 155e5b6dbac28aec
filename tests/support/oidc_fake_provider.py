"""A small OpenID Connect provider the tests control: it signs whatever ID token a test asks
for (another audience, an old expiry, a foreign key ...), so each refusal can be shown.

It is a real HTTP server (discovery, JWKS, authorize, token) with real PKCE and
single-use codes; only the ID token's content is up to the test, through `tamper`.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from common.timestamps import Clock

CLIENT_ID = "passgate-fake"
CLIENT_SECRET = "fake-client-secret"

# tamper(claims, header) may edit both, and return the key to sign with (else: the published key).
Tamper = Callable[[dict[str, Any], dict[str, Any]], Any]


_KEYS: list[RSAKey] = []


def _published_key() -> RSAKey:
    """One key per test session: RSA generation is the slow part."""
    if not _KEYS:
        _KEYS.append(RSAKey.generate_key(2048, parameters={"kid": "published"}))
    return _KEYS[0]


@dataclasses.dataclass
class FakeProvider:
    clock: Clock
    issuer: str = ""
    key: RSAKey = dataclasses.field(default_factory=lambda: _published_key())
    # The account the next authorization signs in as: its claims.
    account: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "sub": "fake-user-1",
            "email": "one@example.test",
            "email_verified": True,
            "name": "Fake One",
        }
    )
    tamper: Tamper | None = None
    codes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    authorizations: list[dict[str, str]] = dataclasses.field(default_factory=list)
    token_requests: int = 0
    issued: list[str] = dataclasses.field(default_factory=list)  # every token it answered with
    fetches: dict[str, int] = dataclasses.field(default_factory=dict)
    # Overrides merged into the discovery document (another issuer, no S256 ...).
    discovery_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        return app

    async def discovery(self, request: web.Request) -> web.Response:
        self.fetches["discovery"] = self.fetches.get("discovery", 0) + 1
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                **self.discovery_overrides,
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches["jwks"] = self.fetches.get("jwks", 0) + 1
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: web.Request) -> web.Response:
        """No login page: the current account consents at once."""
        params = dict(request.query)
        self.authorizations.append(params)
        assert params["client_id"] == CLIENT_ID and params["response_type"] == "code"
        assert params["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {**params, "account": dict(self.account)}
        query = urlencode({"code": code, "state": params["state"], "iss": self.issuer})
        raise web.HTTPFound(f"{params['redirect_uri']}?{query}")

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        grant = self.codes.pop(str(form.get("code")), None)  # single use
        if grant is None or form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = str(form.get("code_verifier", ""))
        if create_s256_code_challenge(verifier) != grant["code_challenge"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(self.clock().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **grant["account"],
        }
        header = {"alg": "RS256", "kid": self.key.kid}
        chosen = self.tamper(claims, header) if self.tamper else None
        key = chosen if isinstance(chosen, (RSAKey, OctKey)) else None
        id_token = jwt.encode(header, claims, key or self.key, algorithms=[header["alg"]])
        access_token = secrets.token_urlsafe(16)
        self.issued += [id_token, access_token]
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            },
            headers={"Cache-Control": "no-store"},
        )
