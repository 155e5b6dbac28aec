"""Fixtures for the auth service: settings with a cheap Argon2 cost, an injected clock,
a shared RSA key set, and a tiny real users service that records provisioning calls
(tests/support/users_stub.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from common.settings import DatabaseSettings, ServerSettings
from services.auth.app import create_app
from services.auth.keyring.signing_keys import ensure_key_set
from services.auth.settings import AuthSettings
from tests.support.auth_client import CHEAP_ARGON2_SETTINGS
from tests.support.clock import FakeClock, START
from tests.support.identity_headers import trust_settings
from tests.support.users_stub import UsersStub, start_users_stub


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def key_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key set generated per session (RSA generation is the slow part), copied per test."""
    directory = tmp_path_factory.mktemp("keys-template")
    ensure_key_set(directory, START - dt.timedelta(days=1), generate=True)
    return directory


@pytest.fixture
def keys_dir(tmp_path: Path, key_template: Path) -> Path:
    target = tmp_path / "keys"
    shutil.copytree(key_template, target)
    return target


@pytest.fixture
def make_settings(tmp_path: Path, keys_dir: Path) -> Callable[..., AuthSettings]:
    def make(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "server": ServerSettings(service="auth", port=0),
            "database": DatabaseSettings(f"sqlite:///{tmp_path / 'auth.db'}"),
            "signing_keys_dir": keys_dir,
            "argon2": CHEAP_ARGON2_SETTINGS,
            "issuer": "http://gateway.test",
            "audience": "passgate",
            "login_max_failures": 3,
            "login_max_failures_per_address": 50,
            "assertion_trust": trust_settings(),
        }
        if "database_url" in overrides:
            values["database"] = DatabaseSettings(overrides.pop("database_url"))
        values.update(overrides)
        return AuthSettings(**values)

    return make


AuthClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def auth_client(aiohttp_client, make_settings, clock) -> AuthClientFactory:
    """The real create_app behind a real test server; settings overridable per test."""

    async def start(*, registry: CollectorRegistry | None = None, **overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides), registry=registry, clock=clock)
        return await aiohttp_client(app)

    return start


@pytest.fixture
async def users_service(aiohttp_server) -> UsersStub:
    return await start_users_stub(aiohttp_server)
