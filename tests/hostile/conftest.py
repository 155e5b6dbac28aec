"""One real Passgate system (four processes, SQLite, DEBUG logs) that the attacks are aimed at.

The schemathesis run gets a stack of its own (tests/hostile/test_schema_fuzz.py), so its
flood of logins and registrations can never lock out or rate-limit the accounts here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import Stack
from tests.support.hostile import (
    Client,
    Secrets,
    User,
    auth_command,
    hostile_config,
    login,
    new_user,
    register,
)
from tests.support.stack import current_signing_key, running_stack

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(hostile_config(tmp_path_factory.mktemp("hostile-stack"))) as stack:
        yield stack


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
    return current_signing_key(stack)
