"""Every URL of the auth service, in one table."""

from __future__ import annotations

from aiohttp import web

from services.auth.accounts import handlers as accounts
from services.auth.external import handlers as external
from services.auth.keyring import handlers as keyring
from services.auth.tokens import handlers as tokens


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/auth/register", accounts.register, name="register")
    router.add_post("/auth/login", accounts.login, name="login")
    router.add_post("/auth/refresh", tokens.refresh, name="refresh")
    router.add_post("/auth/logout", tokens.logout, name="logout")
    # These two need a token: the gateway verifies it and sets the X-User-* identity.
    router.add_post("/auth/logout-all", tokens.logout_all, name="logout_all")
    router.add_post("/auth/password", accounts.change_password, name="change_password")
    router.add_post("/auth/token", tokens.token, name="token")
    # RFC 7009 and RFC 7662: OAuth clients authenticate themselves (tokens/client_auth.py).
    router.add_post("/auth/revoke", tokens.revoke, name="revoke")
    router.add_post("/auth/introspect", tokens.introspect, name="introspect")
    # Sign-in with external OpenID Connect providers (services/auth/external/). Linking
    # needs a token, like /auth/password; the callback is where providers send browsers.
    router.add_get("/auth/oidc/providers", external.providers, name="oidc_providers")
    router.add_post("/auth/oidc/exchange", external.exchange, name="oidc_exchange")
    router.add_post("/auth/oidc/{provider}/start", external.start, name="oidc_start")
    router.add_post("/auth/oidc/{provider}/link", external.link, name="oidc_link")
    router.add_get("/auth/oidc/{provider}/callback", external.callback, name="oidc_callback")
    router.add_get("/.well-known/jwks.json", keyring.jwks, name="jwks")
    router.add_get("/.well-known/openid-configuration", tokens.discovery, name="discovery")
