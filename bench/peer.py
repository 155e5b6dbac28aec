"""What the bench's C peers (nginx, HAProxy) share: installed from Debian when missing,
run in the foreground from a generated config on a free port, waited for until they
answer HTTP, stopped at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO


def find_binary(name: str) -> str | None:
    """`name` on PATH, or in the sbin directories a non-root PATH may lack."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None
    )


def apt_install(packages: Sequence[str], find: Callable[[], str | None], *, service: str | None = None,
                timeout: float = 300) -> str | None:
    """The binary `find` locates, after `apt-get install` of the first package that provides
    it when it is missing and we are root on Debian; any service the package starts is
    stopped (the bench runs its own on a free port). None when it cannot be had."""
    if find() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return find()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for package in packages:
        try:
            subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if find():
            break
    if service:
        for stop in (["service", service, "stop"], ["systemctl", "stop", service]):
            if shutil.which(stop[0]):
                subprocess.run(stop, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return find()


def installed(install: Callable[[], str | None], name: str) -> str:
    """The binary `install` finds or installs; a scenario cannot run without it."""
    binary = install()
    if binary is None:
        raise RuntimeError(f"{name} is not installed and could not be installed")
    return binary


class PeerProcess:
    """One peer process in the foreground (its CPU is this pid's and its children's)."""

    name = "peer"

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.process.pid

    def log_tail(self) -> str:
        """The end of the peer's error output, for a failure message."""
        return ""

    def launch(self, argv: list[str], output: IO[bytes] | int = subprocess.DEVNULL, timeout: float = 10.0) -> None:
        """Start `argv` and wait until the peer answers any HTTP status on its port."""
        self.process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answered (nginx 404, HAProxy 401 without a token)
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not answering after {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
            return
        self.process.kill()  # it did not stop within 10 s of SIGTERM
        self.process.wait()
