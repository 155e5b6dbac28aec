"""`make run`'s promises: the printed walkthrough works as printed; only auth holds keys."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from devstack.stack import ROOT, Stack
from devstack.walkthrough import DEFAULT_GATEWAY, walkthrough


def test_readme_shows_the_walkthrough_make_run_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    assert walkthrough(DEFAULT_GATEWAY) in readme


def test_walkthrough_runs_as_printed(stack: Stack) -> None:
    """The exact commands, pointed at this stack's gateway; every curl -f step must succeed."""
    script = "set -euo pipefail\n" + walkthrough(stack.gateway_url)
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    registered, profile, order, listing, refused = (
        json.loads(line) for line in result.stdout.splitlines() if line.strip()
    )
    assert registered["username"] == profile["username"] == "alice"
    assert profile["display_name"] == "Alice"
    assert order["total_cents"] == 2500
    assert order["id"] in [item["id"] for item in listing["items"]]
    assert refused["status"] == 401


def _open_paths(pid: int) -> set[str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    paths = set()
    for fd in fd_dir.iterdir():
        try:
            paths.add(os.readlink(fd))
        except OSError:
            continue
    return paths


# The gateway signs identity assertions for backends with keys of its own, never auth's.
GATEWAY_ASSERTION_KEY_SETTINGS = {"PASSGATE_ASSERTION_KEYS_DIR", "PASSGATE_GENERATE_ASSERTION_KEYS"}


def test_only_auth_is_given_signing_keys(stack: Stack) -> None:
    """users and orders get no key setting, the gateway only its assertion keys, and none of
    them holds a file of auth's token-signing keys open."""
    keys_dir = str(stack.config.data_dir / "keys")
    for name, process in stack.processes.items():
        key_settings = {k for k in process.env if "KEY" in k or "SECRET" in k}
        if name.startswith("auth"):
            assert "PASSGATE_SIGNING_KEYS_DIR" in key_settings
            continue
        if name.startswith("gateway"):
            key_settings -= GATEWAY_ASSERTION_KEY_SETTINGS
        assert not key_settings, f"{name} was given {key_settings}"
        assert process.process is not None
        assert not any(path.startswith(keys_dir) for path in _open_paths(process.process.pid))
