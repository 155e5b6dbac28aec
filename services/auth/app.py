"""create_app: the auth service's application factory."""

from __future__ import annotations

import asyncio
import contextlib
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
from common.assertion import install_verifier
from common.db import database_ctx, database_unavailable_middleware
from common.errors import Problem
from common.keys import READINESS, REGISTRY
from common.timestamps import Clock, utc_now
from common.validation import OpenApiDocument
from services.auth.accounts import Accounts
from services.auth.admission import HashingBusyError
from services.auth.external import ExternalSignIn
from services.auth.keys import (
    ACCOUNTS,
    CLOCK,
    EXTERNAL_SIGN_IN,
    KEY_RING,
    METRICS,
    OPENAPI,
    PASSWORDS,
    PROVISIONER,
    REPOSITORY,
    SETTINGS,
    THROTTLE,
    TOKENS,
)
from services.auth.metrics import AuthMetrics
from services.auth.oidc import OidcClient
from services.auth.passwords import Passwords
from services.auth.provisioning import ProfileProvisioner
from services.auth.repository import AuthRepository
from services.auth.routes import setup_routes
from services.auth.settings import AuthSettings
from services.auth.signing_keys import KeyRing, NoSigningKeyError, ensure_key_set
from services.auth.throttle import make_throttle
from services.auth.tokens import TokenService

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

    def store(app: web.Application, engine: AsyncEngine) -> None:
        app[REPOSITORY] = AuthRepository(engine)

    app.cleanup_ctx.extend(
        [
            key_ring_ctx,
            database_ctx(settings.database, MIGRATIONS_DIR, store),
            passwords_ctx,
            throttle_ctx,
            provisioner_ctx,
            services_ctx,
            external_sign_in_ctx,
        ]
    )
    setup_routes(app)
    return app


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


async def key_ring_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the shared key set (creating it only where allowed) and follow its changes."""
    settings, ring, clock = app[SETTINGS], app[KEY_RING], app[CLOCK]
    loop = asyncio.get_running_loop()
    generated = await loop.run_in_executor(
        None,
        lambda: ensure_key_set(settings.signing_keys_dir, clock(), generate=settings.generate_keys),
    )
    await loop.run_in_executor(None, ring.load)
    if generated:
        _LOGGER.info("generated the first signing key", extra={"kids": [k.kid for k in ring.keys]})

    async def signing_key_ready() -> None:
        ring.signing_key(clock())

    app[READINESS].add("signing_keys", signing_key_ready)

    async def follow() -> None:
        # Rotations and Secret updates reach every replica within one interval.
        while True:
            await asyncio.sleep(settings.key_reload_interval)
            try:
                if await loop.run_in_executor(None, ring.changed):
                    await loop.run_in_executor(None, ring.load)
                    _LOGGER.info(
                        "signing keys reloaded", extra={"kids": [k.kid for k in ring.keys]}
                    )
            except Exception as error:  # keep serving with the keys we have
                _LOGGER.error("signing keys not reloaded: %s", error)

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    passwords = Passwords(app[SETTINGS].argon2, app[METRICS].password_hash_duration)
    try:
        await passwords.start()
        app[PASSWORDS] = passwords
        yield
    finally:
        passwords.close()


async def throttle_ctx(app: web.Application) -> AsyncIterator[None]:
    throttle = make_throttle(app[SETTINGS], app[REPOSITORY])
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
    settings, clock = app[SETTINGS], app[CLOCK]
    app[TOKENS] = TokenService(settings, app[KEY_RING], app[REPOSITORY], clock)
    app[ACCOUNTS] = Accounts(
        settings,
        app[REPOSITORY],
        app[PASSWORDS],
        app[THROTTLE],
        app.get(PROVISIONER),
        app[METRICS],
        clock,
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
            app[REPOSITORY],
            app[TOKENS],
            app.get(PROVISIONER),
            app[METRICS],
            clock,
        )
        yield
