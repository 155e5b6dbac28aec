"""register_account(): the one sign-up path, for passwords and external sign-in alike."""

from __future__ import annotations

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from common.db import create_engine, migrate
from services.auth.accounts.password_policy import PasswordPolicyError
from services.auth.accounts.passwords import Passwords
from services.auth.accounts.provisioning import ProfileProvisioner
from services.auth.accounts.registration import (
    ProvisioningError,
    Registration,
    normalize_username,
)
from services.auth.accounts.repository import AccountRepository, UsernameTakenError
from services.auth.accounts.throttle import account_key, pair_key
from services.auth.app import MIGRATIONS_DIR
from services.auth.external.repository import (
    ExternalIdentity,
    ExternalRepository,
    IdentityTakenError,
    insert_identity,
)
from services.auth.metrics import AuthMetrics
from tests.support.auth_client import CHEAP_ARGON2_SETTINGS
from tests.support.clock import START
from tests.support.http import PASSWORD


class Stack:
    """Registration over a migrated database, provisioning at the users stand-in."""

    def __init__(self, registration: Registration, metrics: AuthMetrics) -> None:
        self.registration = registration
        self.accounts = registration.repository
        self.external = ExternalRepository(self.accounts.engine)
        self.metrics = metrics

    def registrations(self, result: str) -> float:
        return self.metrics.registrations.labels(result)._value.get()


@pytest.fixture
async def stack(database_url, users_service):
    engine = create_engine(database_url)
    await migrate(engine, MIGRATIONS_DIR)
    metrics = AuthMetrics(CollectorRegistry())
    passwords = Passwords(CHEAP_ARGON2_SETTINGS, metrics.password_hash_duration, threads=1)
    await passwords.start()
    async with aiohttp.ClientSession() as session:
        provisioner = ProfileProvisioner(session, users_service.url)
        registration = Registration(
            AccountRepository(engine),
            passwords,
            provisioner,
            metrics,
            lambda: START,
            default_role="user",
        )
        try:
            yield Stack(registration, metrics)
        finally:
            passwords.close()
            await engine.dispose()


def identity(account_id: str = "") -> ExternalIdentity:
    return ExternalIdentity("https://idp.example", "sub-1", account_id, "idp", None)


async def test_a_password_account_is_stored_normalised_and_counted(stack, users_service) -> None:
    account = await stack.registration.register_account(
        ["Alice"], password=PASSWORD, display_name=None
    )
    assert account.username == "alice" and account.has_password
    assert await stack.accounts.by_username("alice") == account
    assert users_service.calls[0]["body"] == {"username": "alice", "display_name": "alice"}
    assert stack.registrations("success") == 1


async def test_an_external_account_has_no_password_and_takes_the_next_free_name(stack) -> None:
    await stack.registration.register_account(["alice"], password=PASSWORD, display_name=None)
    account = await stack.registration.register_account(
        ["alice", "alice-2"],
        password=None,
        display_name="Alice Example",
        together=lambda account: [insert_identity(identity(account.id), START)],
    )
    assert account.username == "alice-2" and not account.has_password
    linked = await stack.external.external_identity("https://idp.example", "sub-1")
    assert linked is not None and linked.account_id == account.id
    assert stack.registrations("success") == 2
    assert stack.registrations("conflict") == 0  # a taken candidate is not a failed sign-up


async def test_every_name_taken_is_one_counted_conflict(stack) -> None:
    await stack.registration.register_account(["alice"], password=PASSWORD, display_name=None)
    with pytest.raises(UsernameTakenError):
        await stack.registration.register_account(["alice"], password=PASSWORD, display_name=None)
    assert stack.registrations("conflict") == 1


async def test_a_weak_password_is_counted_invalid_and_stores_nothing(stack) -> None:
    with pytest.raises(PasswordPolicyError):
        await stack.registration.register_account(["bob"], password="bob", display_name=None)
    assert await stack.accounts.by_username("bob") is None
    assert stack.registrations("invalid") == 1


async def test_a_refused_profile_removes_the_account_and_its_rows(stack, users_service) -> None:
    users_service.status = 503
    with pytest.raises(ProvisioningError):
        await stack.registration.register_account(
            ["carol"],
            password=None,
            display_name=None,
            together=lambda account: [insert_identity(identity(account.id), START)],
        )
    assert await stack.accounts.by_username("carol") is None
    assert await stack.external.external_identity("https://idp.example", "sub-1") is None
    assert stack.registrations("provisioning_failed") == 1


async def test_a_conflict_on_the_rows_stored_together_is_explained(stack) -> None:
    first = await stack.registration.register_account(
        ["dave"],
        password=None,
        display_name=None,
        together=lambda account: [insert_identity(identity(account.id), START)],
    )

    async def identity_taken() -> None:
        if await stack.external.external_identity("https://idp.example", "sub-1"):
            raise IdentityTakenError()

    with pytest.raises(IdentityTakenError):
        await stack.registration.register_account(
            ["erin"],
            password=None,
            display_name=None,
            together=lambda account: [insert_identity(identity(account.id), START)],
            explain_conflict=identity_taken,
        )
    # Neither the account nor a second link exists: one transaction.
    assert await stack.accounts.by_username("erin") is None
    linked = await stack.external.external_identity("https://idp.example", "sub-1")
    assert linked is not None and linked.account_id == first.id


registrable = st.from_regex(r"[a-z0-9._-]{3,64}", fullmatch=True)


@given(name=registrable, flips=st.lists(st.booleans(), min_size=64, max_size=64))
def test_every_spelling_of_a_name_is_one_account_and_one_throttle_key(
    name: str, flips: list[bool]
) -> None:
    spelled = "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=False))
    assert normalize_username(spelled) == name
    assert account_key(normalize_username(spelled)) == account_key(name)
    assert pair_key(normalize_username(spelled), "192.0.2.1") == pair_key(name, "192.0.2.1")
