"""The one way tests run a whole Passgate system (devstack's Stack: every process on free
ports): start it, hand it over, stop it, and require that every process exited cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import PortPlan, Stack, StackConfig
from services.auth.keyring.signing_keys import read_key_set
from tests.support.servers import POSTGRES_URL, require_server
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes


def assert_clean_exits(stack: Stack) -> None:
    codes = stack.stop()
    assert all(code == 0 for code in codes.values()), f"unclean exits: {codes}"


@contextlib.contextmanager
def running_stack(config: StackConfig, *, timeout: float = 60.0) -> Iterator[Stack]:
    """Start the system; at the end stop it, every process having exited with 0."""
    stack = Stack(config)
    try:
        stack.start(timeout=timeout)
        yield stack
        assert_clean_exits(stack)
    finally:
        stack.stop()  # after a failure half-way: nothing left running


@contextlib.contextmanager
def postgres_stack(
    data_dir: Path,
    *,
    replicas: int,
    gateways: int,
    env: Mapping[str, Mapping[str, str]] | None = None,
    process_env: Mapping[str, Mapping[str, str]] | None = None,
    prefix: str | None = None,
) -> Iterator[Stack]:
    """A system with replicas on fresh PostgreSQL databases, cheap hashing and generous rate
    limits (these tests measure availability, not Argon2's cost or the gateway's throttling);
    the databases are dropped at the end."""
    require_server(POSTGRES_URL, 5432, "postgres")
    merged: dict[str, dict[str, str]] = {
        "auth": {**CHEAP_ARGON2, "PASSGATE_ARGON2_PARALLELISM": "1"},
        "gateway": {"PASSGATE_ROUTES_FILE": str(generous_routes(data_dir / "routes.yaml"))},
    }
    for component, values in (env or {}).items():
        merged.setdefault(component, {}).update(values)
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(replicas=replicas, gateways=gateways),
        replicas=replicas,
        gateways=gateways,
        db="postgres",
        postgres_url=POSTGRES_URL,
        database_prefix=prefix or f"passgate_scaleout_{uuid.uuid4().hex[:10]}",
        database_pool_size=2,
        env=merged,
        process_env=dict(process_env or {}),
    )
    stack = Stack(config)
    try:
        stack.start(timeout=90)
        yield stack
        stack.revive()  # a test that failed half-way may have left a process down
        assert_clean_exits(stack)
    finally:
        stack.stop()
        asyncio.run(stack.drop_databases())


def current_signing_key(stack: Stack) -> tuple[rsa.RSAPrivateKey, str]:
    """The key auth signs with now, read from its key directory as an operator could."""
    keys = read_key_set(stack.config.data_dir / "keys")
    now = dt.datetime.now(dt.UTC)
    key = max((k for k in keys if k.signs_at(now)), key=lambda k: (k.not_before, k.created_at))
    return key.private_key, key.kid
