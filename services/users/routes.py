"""The URL table of the users service."""

from __future__ import annotations

from aiohttp import web

from services.users import handlers


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/users/me", handlers.get_own_profile, name="own_profile")
    app.router.add_patch("/users/me", handlers.update_own_profile, name="update_own_profile")
    app.router.add_get("/users/{user_id}", handlers.get_profile, name="profile")
    app.router.add_put(
        "/internal/profiles/{user_id}", handlers.provision_profile, name="provision_profile"
    )
