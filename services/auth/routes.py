"""Every URL of the auth service, in one table."""

from __future__ import annotations

from aiohttp import web

from services.auth import handlers, oidc_handlers


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/auth/register", handlers.register, name="register")
    router.add_post("/auth/login", handlers.login, name="login")
    router.add_post("/auth/refresh", handlers.refresh, name="refresh")
    router.add_post("/auth/logout", handlers.logout, name="logout")
    # These two need a token: the gateway verifies it and sets the X-User-* identity.
    router.add_post("/auth/logout-all", handlers.logout_all, name="logout_all")
    router.add_post("/auth/password", handlers.change_password, name="change_password")
    router.add_post("/auth/token", handlers.token, name="token")
    # Sign-in with external OpenID Connect providers (services/auth/external.py). Linking
    # needs a token, like /auth/password; the callback is where providers send browsers.
    router.add_get("/auth/oidc/providers", oidc_handlers.providers, name="oidc_providers")
    router.add_post("/auth/oidc/exchange", oidc_handlers.exchange, name="oidc_exchange")
    router.add_post("/auth/oidc/{provider}/start", oidc_handlers.start, name="oidc_start")
    router.add_post("/auth/oidc/{provider}/link", oidc_handlers.link, name="oidc_link")
    router.add_get("/auth/oidc/{provider}/callback", oidc_handlers.callback, name="oidc_callback")
    router.add_get("/.well-known/jwks.json", handlers.jwks, name="jwks")
    router.add_get("/.well-known/openid-configuration", handlers.discovery, name="discovery")
