"""create_app: the auth service's application factory."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from common.app import make_base_app
from common.app_keys import READINESS, REGISTRY
from common.assertion import install_verifier
from common.db import database_ctx, database_unavailable_middleware
from common.errors import Problem
from common.timestamps import Clock, utc_now
from common.validation import OpenApiDocument
from services.auth.accounts.admission import HashingBusyError
from services.auth.accounts.login import Credentials
from services.auth.accounts.passwords import Passwords
from services.auth.accounts.provisioning import ProfileProvisioner
from services.auth.accounts.registration import Registration
from services.auth.accounts.repository import AccountRepository
from services.auth.accounts.throttle import make_throttle
from services.auth.accounts.throttle_repository import LoginFailureRepository
from services.auth.app_keys import (
    ACCOUNT_REPOSITORY,
    CLIENT_AUTHENTICATION,
    CLIENT_CREDENTIALS,
    CLIENT_REPOSITORY,
    CLOCK,
    CREDENTIALS,
    EXTERNAL_REPOSITORY,
    EXTERNAL_SIGN_IN,
    FAMILY_REPOSITORY,
    INTROSPECTION,
    KEY_RING,
    LOGIN_FAILURE_REPOSITORY,
    METRICS,
    MINTER,
    OPENAPI,
    PASSWORDS,
    PROVISIONER,
    REGISTRATION,
    REVOCATION,
    SESSIONS,
    SETTINGS,
    THROTTLE,
)
from services.auth.external.oidc_client import OidcClient
from services.auth.external.repository import ExternalRepository
from services.auth.external.sign_in import ExternalSignIn
from services.auth.keyring.follow import key_ring_ctx
from services.auth.keyring.signing_keys import KeyRing, NoSigningKeyError
from services.auth.metrics import AuthMetrics
from services.auth.routes import setup_routes
from services.auth.settings import AuthSettings
from services.auth.tokens.client_auth import ClientAuthentication
from services.auth.tokens.clients import ClientCredentials, ClientRepository
from services.auth.tokens.families import RefreshFamilyRepository
from services.auth.tokens.introspection import AccessTokens, TokenIntrospection
from services.auth.tokens.minter import AccessTokenMinter
from services.auth.tokens.refresh import Sessions
from services.auth.tokens.revocation import TokenRevocation

_LOGGER = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
OPENAPI_PATH = PACKAGE_DIR / "openapi.yaml"


def create_app(
    settings: AuthSettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock = utc_now,
) -> web.Application:
    # Middleware order (after the common ones): a lost database and a key set with no
    # active key both become a 503 problem instead of a 500.
    app = make_base_app(
        "auth",
        registry=registry,
        middlewares=[database_unavailable_middleware, unavailable_middleware],
        expose_metrics=settings.server.admin_port is None,
    )
    install_verifier(app, settings.assertion_trust)  # auth is a backend of the gateway too
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[OPENAPI] = OpenApiDocument.load(OPENAPI_PATH)
    app[METRICS] = AuthMetrics(app[REGISTRY], tuple(p.id for p in settings.oidc.providers))
    app[KEY_RING] = KeyRing(settings.signing_keys_dir, dt.timedelta(seconds=settings.key_retention))

    app.cleanup_ctx.extend(
        [
            key_ring_ctx,
            database_ctx(settings.database, MIGRATIONS_DIR, store_repositories),
            passwords_ctx,
            throttle_ctx,
            provisioner_ctx,
            services_ctx,
            external_sign_in_ctx,
        ]
    )
    setup_routes(app)
    return app


def store_repositories(app: web.Application, engine: AsyncEngine) -> None:
    """Each sub-package's repository over the one database."""
    app[ACCOUNT_REPOSITORY] = AccountRepository(engine)
    app[LOGIN_FAILURE_REPOSITORY] = LoginFailureRepository(engine)
    app[FAMILY_REPOSITORY] = RefreshFamilyRepository(engine)
    app[CLIENT_REPOSITORY] = ClientRepository(engine)
    app[EXTERNAL_REPOSITORY] = ExternalRepository(engine)


@web.middleware
async def unavailable_middleware(
    request: web.Request, handler: web.RequestHandler
) -> web.StreamResponse:
    """What auth cannot do right now (no active signing key, hashing at capacity): 503."""
    try:
        return await handler(request)
    except NoSigningKeyError:
        _LOGGER.error("no signing key is active; run rotate-keys")
        raise Problem(
            503, "tokens cannot be issued right now", kind="signing-unavailable"
        ) from None
    except HashingBusyError as busy:
        _LOGGER.warning("password hashing at capacity; answering 503")
        retry_after = max(1, math.ceil(busy.retry_after))
        raise Problem(
            503,
            "too many sign-ins at once; retry shortly",
            kind="auth-busy",
            headers={"Retry-After": str(retry_after)},
            extensions={"retry_after": retry_after},
        ) from None


async def passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    passwords = Passwords(app[SETTINGS].argon2, app[METRICS].password_hash_duration)
    try:
        await passwords.start()
        app[PASSWORDS] = passwords
        yield
    finally:
        passwords.close()


async def throttle_ctx(app: web.Application) -> AsyncIterator[None]:
    throttle = make_throttle(app[SETTINGS], app[LOGIN_FAILURE_REPOSITORY])
    app[THROTTLE] = throttle
    if app[SETTINGS].redis_url:

        async def redis_ready() -> None:
            await throttle.ping()

        app[READINESS].add("redis", redis_ready)
    try:
        yield
    finally:
        await throttle.close()


async def provisioner_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session for the users service, when there is one to provision at."""
    settings = app[SETTINGS]
    if settings.users_url is None:
        yield
        return
    timeout = aiohttp.ClientTimeout(total=settings.provisioning_timeout, connect=2.0)
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        app[PROVISIONER] = ProfileProvisioner.from_settings(session, settings)
        yield


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """The use cases the handlers call, from the parts the contexts above made."""
    settings, clock = app[SETTINGS], app[CLOCK]
    minter = AccessTokenMinter(settings, app[KEY_RING], clock)
    app[MINTER] = minter
    app[SESSIONS] = Sessions(settings, minter, app[FAMILY_REPOSITORY], clock)
    app[CLIENT_CREDENTIALS] = ClientCredentials(minter)
    app[CLIENT_AUTHENTICATION] = ClientAuthentication(
        settings, app[CLIENT_REPOSITORY], app[THROTTLE], clock
    )
    access_tokens = AccessTokens(settings, app[KEY_RING], clock)
    app[REVOCATION] = TokenRevocation(access_tokens, app[FAMILY_REPOSITORY], clock)
    app[INTROSPECTION] = TokenIntrospection(
        settings, access_tokens, app[FAMILY_REPOSITORY], clock
    )
    app[REGISTRATION] = Registration(
        app[ACCOUNT_REPOSITORY],
        app[PASSWORDS],
        app.get(PROVISIONER),
        app[METRICS],
        clock,
        default_role=settings.scope_policy.default_role,
    )
    app[CREDENTIALS] = Credentials(
        settings, app[ACCOUNT_REPOSITORY], app[PASSWORDS], app[THROTTLE], clock
    )
    yield


async def external_sign_in_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session for every configured OpenID Connect provider, when there are any.

    Discovery and key sets are fetched on first use, not here: a provider that is down
    must not stop auth from starting or serving password logins.
    """
    settings, clock = app[SETTINGS], app[CLOCK]
    if not settings.oidc.providers:
        yield
        return
    timeout = aiohttp.ClientTimeout(total=settings.oidc.http_timeout, connect=5.0)
    async with aiohttp.ClientSession(
        timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False
    ) as session:
        clients = {
            provider.id: OidcClient(provider, settings.oidc, session, clock)
            for provider in settings.oidc.providers
        }
        app[EXTERNAL_SIGN_IN] = ExternalSignIn(
            settings.oidc,
            clients,
            app[EXTERNAL_REPOSITORY],
            app[ACCOUNT_REPOSITORY],
            app[REGISTRATION],
            app[SESSIONS],
            app[METRICS],
            clock,
        )
        yield
