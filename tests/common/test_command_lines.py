"""Every command line (gateway, auth, users, orders) as an operator meets it: `--help`
prints help, unknown arguments are refused, and a wrong setting, an unsupported or
unreachable database or a taken port is one line on stderr and a non-zero exit, never a
traceback (issue 15, item 10). Each case runs the real `python -m ...` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import ROOT

COMMANDS = {
    "gateway": ["-m", "gateway"],
    "auth": ["-m", "services.auth"],
    "users": ["-m", "services.users"],
    "orders": ["-m", "services.orders"],
}
DATABASE_SERVICES = ("auth", "users", "orders")


def run(component: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PASSGATE_")}
    environment = {
        **base,
        "PYTHONPATH": str(ROOT),
        "PASSGATE_PORT": "0",
        "PASSGATE_ADMIN_PORT": "0",  # never the default 9080, which a running stack may hold
        # Auth needs a key set before anything else; it may make one here.
        "PASSGATE_SIGNING_KEYS_DIR": str(cwd / "keys"),
        "PASSGATE_GENERATE_KEYS": "true",
        **env,
    }
    return subprocess.run(
        [sys.executable, *COMMANDS[component], *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_help_prints_usage_and_starts_nothing(component: str, tmp_path: Path) -> None:
    result = run(component, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m ")
    assert not (tmp_path / ".data").exists()  # no database was created, nothing served


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_unknown_arguments_are_refused(component: str, tmp_path: Path) -> None:
    result = run(component, "--bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr or "invalid choice" in result.stderr


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_a_bad_setting_is_one_line_naming_the_variable(component: str, tmp_path: Path) -> None:
    result = run(component, cwd=tmp_path, PASSGATE_LOG_LEVEL="verbose")
    assert_one_line(result, 2, "PASSGATE_LOG_LEVEL")


def test_a_symmetric_token_algorithm_is_refused_by_the_gateway(tmp_path: Path) -> None:
    result = run("gateway", cwd=tmp_path, PASSGATE_TOKEN_ALGORITHMS="HS256")
    assert_one_line(result, 2, "PASSGATE_TOKEN_ALGORITHMS", "HS256")


@pytest.mark.parametrize("component", DATABASE_SERVICES)
@pytest.mark.parametrize("url", ["mysql://db.example/passgate", "not a url"])
def test_an_unsupported_database_url_is_one_line(component: str, url: str, tmp_path: Path) -> None:
    result = run(component, cwd=tmp_path, PASSGATE_DATABASE_URL=url)
    assert_one_line(result, 2, "PASSGATE_DATABASE_URL")


@pytest.mark.parametrize("component", DATABASE_SERVICES)
def test_an_unreachable_database_is_one_line_and_exit_1(component: str, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://postgres:s3cret@127.0.0.1:{port}/x"
    result = run(component, cwd=tmp_path, PASSGATE_DATABASE_URL=url)
    assert_one_line(result, 1, "cannot start", f"127.0.0.1:{port}")
    assert "s3cret" not in result.stderr  # the password is never printed


@pytest.mark.parametrize("component", ["users", "orders"])
def test_migrate_with_an_unreachable_database_is_one_line(component: str, tmp_path: Path) -> None:
    result = run(component, "migrate", cwd=tmp_path,
                 PASSGATE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    assert_one_line(result, 1, "cannot start")


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_a_taken_port_is_one_line_naming_it(component: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run(component, cwd=tmp_path, PASSGATE_PORT=port,
                     PASSGATE_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert_one_line(result, 1, "port is taken", port)
