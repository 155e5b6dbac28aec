"""One real Passgate system (four processes on free ports, SQLite) shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.stack import current_signing_key, running_stack
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-stack")
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(frontends=3),
        env={
            "auth": {
                **CHEAP_ARGON2,
                # Key rotation is watched within seconds here instead of minutes.
                "PASSGATE_JWKS_MAX_AGE": "1",
                "PASSGATE_KEY_RELOAD_INTERVAL": "1",
            },
            "gateway": {
                "PASSGATE_JWKS_REFETCH_COOLDOWN": "1",
                "PASSGATE_ROUTES_FILE": str(generous_routes(data_dir / "routes.yaml")),
            },
        },
    )
    with running_stack(config) as stack:
        yield stack


@pytest.fixture(scope="package")
def signing_key(stack: Stack) -> tuple[rsa.RSAPrivateKey, str]:
    """The key auth signs with now, read from its key directory as an operator could."""
    return current_signing_key(stack)
