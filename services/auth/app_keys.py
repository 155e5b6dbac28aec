"""Typed application keys of the auth service, declared in one place."""

from __future__ import annotations

from aiohttp import web

from common.timestamps import Clock
from common.validation import OpenApiDocument

SETTINGS = web.AppKey("auth_settings", "AuthSettings")
CLOCK = web.AppKey("clock", Clock)
OPENAPI = web.AppKey("openapi", OpenApiDocument)
METRICS = web.AppKey("auth_metrics", "AuthMetrics")
KEY_RING = web.AppKey("key_ring", "KeyRing")
REPOSITORY = web.AppKey("repository", "AuthRepository")
PASSWORDS = web.AppKey("passwords", "Passwords")
THROTTLE = web.AppKey("throttle", "LoginThrottle")
TOKENS = web.AppKey("tokens", "TokenService")
PROVISIONER = web.AppKey("provisioner", "ProfileProvisioner")
ACCOUNTS = web.AppKey("accounts", "Accounts")
EXTERNAL_SIGN_IN = web.AppKey("external_sign_in", "ExternalSignIn")
