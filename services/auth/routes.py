"""Every URL of the auth service, in one table."""

from __future__ import annotations

from aiohttp import web

from services.auth import handlers


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
    router.add_get("/.well-known/jwks.json", handlers.jwks, name="jwks")
    router.add_get("/.well-known/openid-configuration", handlers.discovery, name="discovery")
