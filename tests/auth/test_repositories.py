"""The repositories on SQLite and PostgreSQL: accounts, families, rotation, failure counters."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pytest

from common.db import create_engine, migrate
from services.auth.accounts.repository import Account, AccountRepository, UsernameTakenError
from services.auth.accounts.throttle_repository import LoginFailureRepository
from services.auth.app import MIGRATIONS_DIR
from services.auth.tokens.families import RefreshFamilyRepository, RotationStatus
from tests.support.clock import START

HOUR = dt.timedelta(hours=1)


@pytest.fixture
async def repository(database_url):
    """The sub-packages' repositories over one migrated database."""
    engine = create_engine(database_url)
    await migrate(engine, MIGRATIONS_DIR)
    try:
        yield SimpleNamespace(
            accounts=AccountRepository(engine),
            families=RefreshFamilyRepository(engine),
            failures=LoginFailureRepository(engine),
        )
    finally:
        await engine.dispose()


async def create_account(
    repository, account_id: str, username: str, password_hash: str, role: str, now: dt.datetime
) -> Account:
    account = Account(account_id, username, password_hash, role, now)
    await repository.accounts.create(account)
    return account


async def family(repository, family_id: str = "f1", token_hash: str = "t1") -> None:
    await repository.families.create_family(
        family_id=family_id,
        account_id="a1",
        client_id="passgate",
        scope="orders:read",
        token_hash=token_hash,
        now=START,
        expires_at=START + 10 * HOUR,
        idle_expires_at=START + HOUR,
    )


async def test_accounts(repository) -> None:
    account = await create_account(repository, "a1", "alice", "$argon2id$x", "user", START)
    with pytest.raises(UsernameTakenError):
        await create_account(repository, "a2", "alice", "$argon2id$y", "user", START)
    assert await repository.accounts.by_username("alice") == account
    assert (await repository.accounts.by_id("a1")).created_at == START
    assert await repository.accounts.set_role("alice", "admin")
    assert not await repository.accounts.set_role("nobody", "admin")
    assert not await repository.accounts.upgrade_password_hash("a1", "$stale", "$new")
    assert await repository.accounts.upgrade_password_hash("a1", "$argon2id$x", "$argon2id$z")
    await family(repository)
    assert await repository.accounts.change_password("a1", "$argon2id$z", "$argon2id$w", START)
    assert await repository.families.family_revoked("f1")
    await repository.accounts.delete("a1")
    assert await repository.accounts.by_id("a1") is None


async def test_rotation_statuses(repository) -> None:
    await create_account(repository, "a1", "alice", "h", "user", START)
    await family(repository)
    decide = lambda grant: grant.scope  # noqa: E731
    assert (
        await repository.families.rotate_refresh_token("nope", "x", START, HOUR, decide)
    ).status is RotationStatus.UNKNOWN
    rotated = await repository.families.rotate_refresh_token("t1", "t2", START, HOUR, decide)
    assert rotated.status is RotationStatus.ROTATED and rotated.decision == "orders:read"
    expired = await repository.families.rotate_refresh_token(
        "t2", "t3", START + 2 * HOUR, HOUR, decide
    )
    assert expired.status is RotationStatus.EXPIRED
    reused = await repository.families.rotate_refresh_token("t1", "t4", START, HOUR, decide)
    assert reused.status is RotationStatus.REUSED
    assert (
        await repository.families.rotate_refresh_token("t2", "t5", START, HOUR, decide)
    ).status is RotationStatus.REVOKED


async def test_a_refusing_decision_spends_nothing(repository) -> None:
    await create_account(repository, "a1", "alice", "h", "user", START)
    await family(repository)

    def refuse(grant):
        raise ValueError("no")

    with pytest.raises(ValueError):
        await repository.families.rotate_refresh_token("t1", "t2", START, HOUR, refuse)
    ok = await repository.families.rotate_refresh_token("t1", "t2", START, HOUR, lambda grant: None)
    assert ok.status is RotationStatus.ROTATED


async def test_concurrent_rotation_has_one_winner(repository) -> None:
    await create_account(repository, "a1", "alice", "h", "user", START)
    await family(repository)
    results = await asyncio.gather(
        *(
            repository.families.rotate_refresh_token("t1", f"n{i}", START, HOUR, lambda g: None)
            for i in range(5)
        )
    )
    statuses = [result.status for result in results]
    assert statuses.count(RotationStatus.ROTATED) == 1
    # The first loser detects reuse and revokes the family; later ones find it revoked.
    assert RotationStatus.REUSED in statuses
    assert set(statuses) <= {RotationStatus.ROTATED, RotationStatus.REUSED, RotationStatus.REVOKED}


async def test_failure_counters_lock_and_expire(repository) -> None:
    window, lockout = dt.timedelta(minutes=5), dt.timedelta(minutes=10)
    for _ in range(2):
        await repository.failures.record_failure([("k", 3), ("addr", 10)], START, window, lockout)
    assert await repository.failures.locked_until(["k", "addr"], START) is None
    await repository.failures.record_failure([("k", 3), ("addr", 10)], START, window, lockout)
    assert await repository.failures.locked_until(["k", "addr"], START) == START + lockout
    # A running lockout survives a correct login (which remembers its address pair).
    await repository.failures.login_succeeded("k", "pair", START, dt.timedelta(days=30))
    assert await repository.failures.locked_until(["k"], START) == START + lockout
    assert await repository.failures.locked_until(["k"], START + lockout) is None


async def test_known_sign_in_addresses_are_remembered_then_forgotten(
    repository,
) -> None:
    remember = dt.timedelta(days=30)
    assert not await repository.failures.known_sign_in_address("pair", START)
    await repository.failures.login_succeeded("k", "pair", START, remember)
    assert await repository.failures.known_sign_in_address("pair", START + remember / 2)
    # Another correct login extends the memory; without one it ends.
    await repository.failures.login_succeeded("k", "pair", START + remember / 2, remember)
    assert await repository.failures.known_sign_in_address("pair", START + remember)
    assert not await repository.failures.known_sign_in_address("pair", START + remember * 2)
    # Expired pairs are removed by the next correct login of anyone.
    await repository.failures.login_succeeded("k2", "other", START + remember * 2, remember)
    assert not await repository.failures.known_sign_in_address("pair", START + remember)


async def test_concurrent_failures_are_all_counted(repository) -> None:
    window, lockout = dt.timedelta(minutes=5), dt.timedelta(minutes=10)
    await asyncio.gather(
        *(repository.failures.record_failure([("k", 6)], START, window, lockout) for _ in range(6))
    )
    assert await repository.failures.locked_until(["k"], START) == START + lockout


async def test_lockouts_are_reported_per_key(repository) -> None:
    window, lockout = dt.timedelta(minutes=5), dt.timedelta(minutes=10)
    await repository.failures.record_failure([("account", 1)], START, window, lockout)
    later = START + dt.timedelta(minutes=1)
    await repository.failures.record_failure([("address", 1)], later, window, lockout)
    assert await repository.failures.lockouts(["account", "address", "other"], later) == {
        "account": START + lockout,
        "address": later + lockout,
    }
    assert await repository.failures.lockouts(["account", "address"], START + lockout) == {
        "address": later + lockout
    }
