"""Password hashing under a storm: admitted while the queue finishes in time, the rest
refused at once with a Retry-After that says when the queue will have drained."""

from __future__ import annotations

import asyncio
import itertools
import os

import argon2
import pytest
from argon2.profiles import RFC_9106_LOW_MEMORY
from prometheus_client import CollectorRegistry, Histogram

from services.auth.accounts.admission import HashAdmission, HashingBusyError
from services.auth.accounts.passwords import Passwords, usable_cores
from services.auth.settings import Argon2Settings
from tests.support.auth_client import CHEAP_ARGON2_SETTINGS, login, stored_password_hash
from tests.support.http import PASSWORD


def _histogram() -> Histogram:
    return Histogram("hash_seconds", "test", ["operation"], registry=CollectorRegistry())


def test_admission_queues_what_finishes_in_time_and_refuses_the_rest() -> None:
    admission = HashAdmission(threads=2, max_wait=3.0, hash_seconds=0.5)
    for _ in range(12):  # rounds of 2 at 0.5 s: the 12th finishes after 3.0 s
        admission.admit()
    with pytest.raises(HashingBusyError) as refused:
        admission.admit()
    # The 13th would finish at 3.5 s: 0.5 s too late; Retry-After is never under 1 s.
    assert refused.value.retry_after == 1.0
    assert admission.pending == 12
    admission.finished(0.5)
    admission.admit()  # room again once one has left


def test_retry_after_is_the_time_the_excess_work_takes() -> None:
    admission = HashAdmission(threads=1, max_wait=3.0, hash_seconds=1.0)
    admission.pending = 10  # ten seconds of work queued
    with pytest.raises(HashingBusyError) as refused:
        admission.admit()
    # The 11th would finish at 11 s; after 8 s, 3 s of work remain: it is admitted then.
    assert refused.value.retry_after == 8.0
    admission.pending = 2  # what is left after those 8 s
    admission.admit()


def test_a_lone_hash_is_admitted_however_slow_and_the_estimate_follows_measurements() -> None:
    admission = HashAdmission(threads=1, max_wait=3.0, hash_seconds=10.0)
    admission.admit()  # nothing queued: even a slow machine hashes one at a time
    admission.finished(0.1)
    assert admission.hash_seconds == pytest.approx(10.0 + 0.2 * (0.1 - 10.0))
    admission.admit()
    admission.finished(None)  # dropped before it ran: no measurement
    assert admission.pending == 0


async def test_a_storm_beyond_the_queue_is_refused_at_once_and_the_rest_verified() -> None:
    passwords = Passwords(CHEAP_ARGON2_SETTINGS, _histogram(), threads=2, max_wait_seconds=3.0)
    await passwords.start()
    try:
        stored = await passwords.hash(PASSWORD)
        passwords.admission.hash_seconds = 1.0  # as if each hash took a second
        results = await asyncio.gather(
            *(passwords.verify(stored, PASSWORD) for _ in range(20)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, HashingBusyError)]
        verified = [r for r in results if not isinstance(r, BaseException) and r.ok]
        assert len(verified) == 6 and len(refused) == 14  # 3 rounds of 2 fit in 3 s
        assert all(r.retry_after >= 1.0 for r in refused)
        assert passwords.admission.pending == 0
        assert (await passwords.verify(stored, PASSWORD)).ok
    finally:
        passwords.close()


async def test_a_hash_that_waited_too_long_for_a_thread_is_not_started() -> None:
    """Work queued behind busy threads is dropped once its caller has likely given up."""
    # Queued at t=0, picked up by a thread at t=100: far past max_queue_seconds.
    ticks = itertools.chain([0.0], itertools.repeat(100.0))
    passwords = Passwords(
        CHEAP_ARGON2_SETTINGS, _histogram(), max_queue_seconds=6.0, monotonic=lambda: next(ticks)
    )
    try:
        with pytest.raises(HashingBusyError):
            await passwords.hash(PASSWORD)
        assert passwords.admission.pending == 0
    finally:
        passwords.close()


async def test_hashes_of_the_previous_default_move_to_owasps_parameters_at_login(
    auth_client, tmp_path
) -> None:
    """Accounts hashed with the RFC 9106 low-memory profile (the default before) are
    re-hashed with m=19 MiB, t=2, p=1 at their next correct login."""
    old = Argon2Settings(
        time_cost=RFC_9106_LOW_MEMORY.time_cost,
        memory_cost=RFC_9106_LOW_MEMORY.memory_cost,
        parallelism=RFC_9106_LOW_MEMORY.parallelism,
    )
    client = await auth_client(argon2=old)
    await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    await client.close()
    client = await auth_client(argon2=Argon2Settings())
    await login(client)
    stored = await stored_password_hash(tmp_path / "auth.db")
    assert argon2.extract_parameters(stored) == argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=2,
        memory_cost=19456,
        parallelism=1,
    )
    await login(client)


def test_hashing_threads_follow_a_cgroup_cpu_limit(tmp_path) -> None:
    """A pod limited to one CPU hashes on one thread, whatever cores the node has."""
    affinity = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    limit.write_text("100000 100000\n")  # a CPU limit of 1
    assert usable_cores(limit) == 1
    limit.write_text("150000 100000\n")  # 1.5 CPUs: two threads can use them
    assert usable_cores(limit) == min(2, affinity)
    limit.write_text("max 100000\n")  # no limit
    assert usable_cores(limit) == affinity
    assert usable_cores(tmp_path / "absent") == affinity  # no cgroup v2
