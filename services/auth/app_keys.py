"""Typed application keys of the auth service, declared in one place."""

from __future__ import annotations

from aiohttp import web

from common.timestamps import Clock
from common.validation import OpenApiDocument

SETTINGS = web.AppKey("auth_settings", "AuthSettings")
CLOCK = web.AppKey("clock", Clock)
OPENAPI = web.AppKey("openapi", OpenApiDocument)
METRICS = web.AppKey("auth_metrics", "AuthMetrics")
# Repositories, one per sub-package's tables (set once the database is open).
ACCOUNT_REPOSITORY = web.AppKey("account_repository", "AccountRepository")
LOGIN_FAILURE_REPOSITORY = web.AppKey("login_failure_repository", "LoginFailureRepository")
FAMILY_REPOSITORY = web.AppKey("family_repository", "RefreshFamilyRepository")
CLIENT_REPOSITORY = web.AppKey("client_repository", "ClientRepository")
EXTERNAL_REPOSITORY = web.AppKey("external_repository", "ExternalRepository")
# Parts the use cases are built from.
KEY_RING = web.AppKey("key_ring", "KeyRing")
PASSWORDS = web.AppKey("passwords", "Passwords")
THROTTLE = web.AppKey("throttle", "LoginThrottle")
PROVISIONER = web.AppKey("provisioner", "ProfileProvisioner")
MINTER = web.AppKey("minter", "AccessTokenMinter")
# The use cases the handlers call.
REGISTRATION = web.AppKey("registration", "Registration")
CREDENTIALS = web.AppKey("credentials", "Credentials")
SESSIONS = web.AppKey("sessions", "Sessions")
CLIENT_CREDENTIALS = web.AppKey("client_credentials", "ClientCredentials")
CLIENT_AUTHENTICATION = web.AppKey("client_authentication", "ClientAuthentication")
REVOCATION = web.AppKey("revocation", "TokenRevocation")
INTROSPECTION = web.AppKey("introspection", "TokenIntrospection")
EXTERNAL_SIGN_IN = web.AppKey("external_sign_in", "ExternalSignIn")
