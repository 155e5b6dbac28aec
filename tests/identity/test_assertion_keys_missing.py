"""A signer started without its assertion keys says so in one line and exits 2 (real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.common.test_command_lines import assert_one_line, run


@pytest.mark.parametrize("component", ["gateway", "auth"])
def test_a_missing_assertion_key_directory_is_one_line(component: str, tmp_path: Path) -> None:
    result = run(
        component,
        cwd=tmp_path,
        PASSGATE_ASSERTION_KEYS_DIR=str(tmp_path / "missing"),
        PASSGATE_USERS_URL="http://127.0.0.1:1",  # auth builds its provisioning signer
    )
    assert_one_line(result, 2, "assertion keys", "PASSGATE_GENERATE_ASSERTION_KEYS")
