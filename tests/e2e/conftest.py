"""One real Passgate system (four processes on free ports, SQLite) shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import PortPlan, Stack, StackConfig


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-stack")
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(),
        # Low Argon2 cost keeps registration quick here; production keeps the library default.
        env={"auth": {"PASSGATE_ARGON2_PROFILE": "test"}},
    )
    stack = Stack(config)
    stack.start()
    try:
        yield stack
    finally:
        codes = stack.stop()
        assert all(code == 0 for code in codes.values()), f"unclean exits: {codes}"
