"""The real, independent OpenID Connect provider (panva/oidc-provider on Node.js), on loopback.

`oidc_provider_app/` beside this module holds its package.json and package-lock.json; `npm ci` installs it
there when node_modules is missing. Without node or npm the tests that need it skip with
the reason, unless PASSGATE_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from devstack.processes import free_port
from tests.support.servers import REQUIRE_SERVICES

PROVIDER_DIR = Path(__file__).parent / "oidc_provider_app"
CLIENT_ID = "passgate-test"
CLIENT_SECRET = "test-client-secret-for-loopback-only"
START_TIMEOUT = 20.0


def unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (required: PASSGATE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def ensure_installed() -> str:
    """The node binary, with oidc-provider installed from the lock file; or skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable(
            "node and npm are needed for the OpenID Connect provider (apt-get install nodejs npm)"
        )
    # One install at a time: test processes running side by side (pytest-xdist's workers)
    # would otherwise run `npm ci` into the same node_modules at once.
    with open(Path(tempfile.gettempdir()) / "passgate-oidc-provider-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                unavailable(f"npm ci failed in {PROVIDER_DIR}: {result.stderr.strip()[-500:]}")
    return node


class NodeProvider:
    """One oidc-provider process: its issuer URL, stopped by stop()."""

    def __init__(
        self,
        redirect_uris: list[str],
        accounts: Mapping[str, Mapping[str, Any]] | None = None,
        log_path: Path | None = None,
        *,
        machine_clients: list[Mapping[str, str]] | None = None,
        resource: Mapping[str, str] | None = None,
    ) -> None:
        """`machine_clients` ({client_id, client_secret, scope}) get RFC 9068 JWT access
        tokens for `resource` ({audience, scope}) by the client credentials grant."""
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.config = {
            "port": self.port,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": redirect_uris,
                }
            ],
            "accounts": dict(accounts or {}),
        }
        if machine_clients and resource:
            self.config["machine_clients"] = [dict(client) for client in machine_clients]
            self.config["resource"] = dict(resource)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProvider:
        node = ensure_installed()
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [node, "server.mjs", json.dumps(self.config)],
                cwd=PROVIDER_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + START_TIMEOUT
        url = f"{self.issuer}/.well-known/openid-configuration"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the OpenID Connect provider exited ({self.process.returncode})"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the OpenID Connect provider did not answer at {url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
