"""One managed child process: started with its own environment, logged to a file, stopped cleanly."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.ports import listens_on


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for tests that start real processes.

    Chosen below the kernel's ephemeral range: a port the OS hands out for bind(0) is also
    what it hands out as the local port of outgoing connections, so between choosing it and
    the child process binding it, any client connection on the machine could take it.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 20000), low)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # everything tried was taken: let the OS choose
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


class ManagedProcess:
    """A Passgate component run as `python -m <module>`, ready when its readiness URL says 200."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        ready_url: str,
        log_path: Path,
        cwd: Path,
        ports: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.ready_url = ready_url
        self.log_path = log_path
        self.cwd = cwd
        # The ports this process listens on: readiness counts only when it is this process
        # that holds them, not another listener answering there.
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.args],
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group: Ctrl-C in the terminal reaches the stack, which then
                # stops each child in order instead of all at once.
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code of the last run, None while it runs (or before it ever started)."""
        return None if self.process is None else self.process.poll()

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(self.exit_report())
            if self.is_ready():
                self._check_listening()
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_path}\n{self.tail()}")

    def _check_listening(self) -> None:
        """Readiness answered: make sure it was this process that answered."""
        assert self.pid is not None
        for port in self.ports:
            if listens_on(self.pid, port) is False:
                if not self.running:
                    raise RuntimeError(self.exit_report())
                raise RuntimeError(
                    f"{self.name}: port {port} is answered by another process, not by "
                    f"{self.name} (pid {self.pid}); see {self.log_path}"
                )

    def exit_report(self) -> str:
        """Which process stopped, with what code, and the end of its log (the reason)."""
        return (
            f"{self.name} exited with code {self.returncode}; see {self.log_path}\n{self.tail(5)}"
        )

    def wait_unready(self, timeout: float = 30.0) -> None:
        """Wait until readiness stops answering 200 (draining, a lost dependency, or gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} still ready after {timeout:.0f} s")

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.running:
            self.process.send_signal(sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit by itself and return its exit code."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{self.name} did not exit within {timeout:.0f} s; see {self.log_path}\n{self.tail()}"
            ) from None

    def restart(self, timeout: float = 60.0) -> None:
        """Stop gracefully if running, start again with the same environment, wait until ready."""
        self.stop()
        self.start()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait for a graceful exit, SIGKILL if it does not come. Returns the exit code."""
        self.signal(signal.SIGTERM)
        return self.reap(timeout)

    def reap(self, timeout: float = 15.0) -> int | None:
        """Wait for an exit already asked for (SIGTERM sent); SIGKILL after the timeout."""
        if self.process is None:
            return None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def kill(self) -> int | None:
        """SIGKILL: no drain, no goodbye, like a crashed process or a lost node."""
        if self.process is None:
            return None
        if self.running:
            self.process.kill()
        return self.process.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
