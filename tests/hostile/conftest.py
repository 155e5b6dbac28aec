"""One real Passgate system (four processes, SQLite, DEBUG logs) that the attacks are aimed at.

The schemathesis run gets a stack of its own (tests/hostile/test_schema_fuzz.py), so its
flood of logins and registrations can never lock out or rate-limit the accounts here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import PortPlan, Stack, StackConfig
from services.auth.keyring.signing_keys import read_key_set
from tests.hostile.attacks import Client, Secrets, User, auth_command, login, new_user, register
from tests.stack_settings import CHEAP_ARGON2, generous_routes

pytestmark = pytest.mark.e2e

SLOW_BODY_TIMEOUT = 3
# Short, so the slow-header test sees connections cut within seconds (the default is 10).
REQUEST_HEAD_TIMEOUT = 3


def start_stack(data_dir: Path, *, log_level: str = "DEBUG", extra: dict | None = None) -> Stack:
    # A short limit for the whole exchange, so a slow-body attack is cut off quickly.
    routes = generous_routes(
        data_dir / "routes.yaml", **{"orders-place": {"timeout": SLOW_BODY_TIMEOUT}}
    )
    env = {
        "auth": dict(CHEAP_ARGON2),
        "gateway": {
            "PASSGATE_ROUTES_FILE": str(routes),
            "PASSGATE_JWKS_REFETCH_COOLDOWN": "1",
            "PASSGATE_REQUEST_HEAD_TIMEOUT_SECONDS": str(REQUEST_HEAD_TIMEOUT),
        },
    }
    for component, values in (extra or {}).items():
        env.setdefault(component, {}).update(values)
    config = StackConfig(
        data_dir=data_dir, ports=PortPlan.free(frontends=2), env=env, log_level=log_level
    )
    stack = Stack(config)
    stack.start()
    return stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("hostile-stack"))
    try:
        yield stack
    finally:
        codes = stack.stop()
        assert all(code == 0 for code in codes.values()), f"unclean exits: {codes}"


@pytest.fixture(scope="package")
def gateway(stack: Stack) -> Client:
    return Client(stack.gateway_url)


@pytest.fixture(scope="package")
def secrets() -> Secrets:
    """Every password, token and client secret the session handled."""
    return Secrets()


@pytest.fixture(scope="package")
def alice(gateway: Client, secrets: Secrets) -> User:
    return new_user(gateway, secrets)


@pytest.fixture(scope="package")
def bob(gateway: Client, secrets: Secrets) -> User:
    return new_user(gateway, secrets)


@pytest.fixture(scope="package")
def admin(stack: Stack, gateway: Client, secrets: Secrets) -> User:
    """A user promoted with the operator command; the role applies from the next login."""
    user_id, username = register(gateway, secrets)
    auth_command(stack, "set-role", username, "admin")
    tokens = login(gateway, secrets, username)
    assert "admin" in tokens["scope"].split()
    return User(user_id, username, "", tokens["access_token"], tokens["refresh_token"], tokens["scope"])


@pytest.fixture(scope="package")
def machine_client(stack: Stack, secrets: Secrets) -> tuple[str, str]:
    """A client-credentials client created by the operator command: (id, secret)."""
    created = json.loads(auth_command(stack, "create-client", "hostile-client", "--scope", "orders:read"))
    secrets.add(created["client_secret"])
    return created["client_id"], created["client_secret"]


@pytest.fixture(scope="package")
def signing_key(stack: Stack) -> tuple[rsa.RSAPrivateKey, str]:
    """The key auth signs with now, read from its key directory as an operator could:
    forged tokens signed with it isolate one claim or header check at a time."""
    keys = read_key_set(stack.config.data_dir / "keys")
    now = dt.datetime.now(dt.UTC)
    key = max((k for k in keys if k.signs_at(now)), key=lambda k: (k.not_before, k.created_at))
    return key.private_key, key.kid
