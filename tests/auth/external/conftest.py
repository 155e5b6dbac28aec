"""Fixtures for external sign-in: the auth service (real create_app, with tests/auth's
settings, clock and users service) configured with providers, the controllable fake
provider and the real one."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from common.timestamps import utc_now
from services.auth.app import create_app
from services.auth.external.config import OidcProvider, OidcSettings
from services.auth.keyring.signing_keys import ensure_key_set
from tests.support.clock import FakeClock, START
from tests.support import oidc_fake_provider as fake
from tests.support.oidc_flow import APP_ORIGIN, CALLBACK_BASE
from tests.support.oidc_node_provider import CLIENT_ID, CLIENT_SECRET, NodeProvider
from tests.support.users_stub import UsersStub

# Accounts of the real provider (any other login id is an account with a verified
# <id>@example.test address).
NODE_ACCOUNTS = {
    "carol": {"email": "carol@example.test", "email_verified": True, "name": "Carol C."},
    "carol-unverified": {
        "email": "carol@example.test",
        "email_verified": False,
        "name": "Not Carol",
    },
}


@pytest.fixture(scope="session")
def oidc_key_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("oidc-keys")
    ensure_key_set(directory, START - dt.timedelta(days=3650), generate=True)
    return directory


def provider_config(
    provider_id: str, issuer: str, client_id: str, secret_file: Path, **extra: Any
) -> OidcProvider:
    return OidcProvider(
        id=provider_id,
        name=extra.pop("name", provider_id.title()),
        issuer=issuer,
        client_id=client_id,
        client_secret=secret_file.read_text().strip(),
        **extra,
    )


AuthFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def oidc_auth(
    aiohttp_client, make_settings, tmp_path: Path, oidc_key_template: Path, users_service: UsersStub
) -> AuthFactory:
    """start(providers, clock=...) -> a test client of the real auth app."""

    async def start(
        providers: tuple[OidcProvider, ...], *, clock: Any = utc_now, database_url: str = ""
    ) -> TestClient:
        # Keys that sign now by the wall clock too: the real provider's flow runs in real time.
        keys = tmp_path / "oidc-keys"
        if not keys.exists():
            shutil.copytree(oidc_key_template, keys)
        settings = make_settings(
            signing_keys_dir=keys,
            users_url=users_service.url,
            oidc=OidcSettings(
                providers=providers,
                callback_base=CALLBACK_BASE,
                return_origins=frozenset({APP_ORIGIN}),
            ),
            **({"database_url": database_url} if database_url else {}),
        )
        return await aiohttp_client(create_app(settings, clock=clock))

    return start


# -- the controllable provider --------------------------------------------------------


@pytest.fixture
async def fake_provider(aiohttp_server, clock: FakeClock) -> fake.FakeProvider:
    provider = fake.FakeProvider(clock=clock)
    server = await aiohttp_server(provider.app())
    provider.issuer = str(server.make_url("")).rstrip("/")
    return provider


@pytest.fixture
def secret_files(tmp_path: Path) -> dict[str, Path]:
    files = {"fake": tmp_path / "fake-secret", "node": tmp_path / "node-secret"}
    files["fake"].write_text(fake.CLIENT_SECRET + "\n")
    files["node"].write_text(CLIENT_SECRET + "\n")
    return files


@pytest.fixture
def fake_config(fake_provider, secret_files) -> Callable[..., OidcProvider]:
    def make(provider_id: str = "fake", **extra: Any) -> OidcProvider:
        return provider_config(
            provider_id, fake_provider.issuer, fake.CLIENT_ID, secret_files["fake"], **extra
        )

    return make


# -- the real provider ----------------------------------------------------------------


@pytest.fixture(scope="session")
def node_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    redirect_uris = [
        f"{CALLBACK_BASE}/auth/oidc/{name}/callback" for name in ("local", "local-trusted")
    ]
    log = tmp_path_factory.mktemp("oidc-provider") / "provider.log"
    provider = NodeProvider(redirect_uris, NODE_ACCOUNTS, log_path=log).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def node_config(node_provider: NodeProvider, secret_files) -> Callable[..., OidcProvider]:
    def make(provider_id: str = "local", **extra: Any) -> OidcProvider:
        return provider_config(
            provider_id, node_provider.issuer, CLIENT_ID, secret_files["node"], **extra
        )

    return make


@pytest.fixture
async def browserless() -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie-keeping HTTP client for the provider's pages (its cookies are on an IP)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
