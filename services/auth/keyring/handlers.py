"""HTTP handler of the key ring: the published public keys."""

from __future__ import annotations

from aiohttp import web

from services.auth.app_keys import CLOCK, KEY_RING, SETTINGS


async def jwks(request: web.Request) -> web.Response:
    """The public keys, new ones included before they sign (RFC 7517)."""
    settings = request.app[SETTINGS]
    key_set = request.app[KEY_RING].jwks(request.app[CLOCK]())
    return web.json_response(
        key_set, headers={"Cache-Control": f"public, max-age={settings.jwks_max_age}"}
    )
