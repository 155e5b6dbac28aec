"""`make run`'s launcher (python -m devstack) as an operator meets it, with real processes
(issue 15, item 12): a port another listener holds fails the start naming the process it
was for; a process that dies after the start stops everything, naming it and why; a
readiness answer from another process on the port does not count as ready; and every port
can be moved with a base port."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack.ports import port_is_free
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT

SPAN = 13  # ports a base port plans for one replica of everything: N .. N+12


def free_base() -> int:
    """A base port whose whole span is free now, below the ephemeral range and below the
    20,000 ports under it where free_port chooses: a test running beside this one (another
    pytest-xdist worker) never picks a port of the span before the launcher binds it."""
    for _ in range(200):
        base = random.randrange(4000, 12000)
        if all(port_is_free("127.0.0.1", base + offset) for offset in range(SPAN)):
            return base
    raise RuntimeError("no free span of ports")


class _AlwaysReady(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def impostor(port: int) -> Iterator[None]:
    """Another program on `port` that answers every GET, /readyz included, with 200."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _AlwaysReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def launcher(base: int, data_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "--base-port", str(base), "--data-dir", str(data_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PASSGATE_ARGON2_TIME_COST": "1", "PASSGATE_ARGON2_MEMORY_COST": "8192"},
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_port_held_by_another_listener_fails_the_start_naming_the_process(tmp_path) -> None:
    base = free_base()
    with impostor(base + 2):  # users' port, answering readiness like users would
        run = launcher(base, tmp_path)
        _, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert f"port {base + 2} (users-1)" in err and "taken by another process" in err
    assert "BASE_PORT" in err
    # Nothing was left running on the other planned ports.
    assert all(port_is_free("127.0.0.1", base + offset) for offset in (0, 1, 3, 9))


def test_a_readiness_answer_from_another_process_is_not_ready(tmp_path) -> None:
    """Between the port check and the bind another program can take the port: then its
    answers on /readyz must not make the launcher's process count as ready."""
    port = free_port()
    with impostor(port):
        process = ManagedProcess(
            "frontend-test",
            ["-m", "devstack.static", "--port", str(port), "--origin", "http://x",
             "--gateway", "http://y", "--root", str(tmp_path)],
            {},
            f"http://127.0.0.1:{port}/healthz",
            tmp_path / "frontend.log",
            ROOT,
            ports=(port,),
        )
        process.start()
        try:
            with pytest.raises(RuntimeError, match="frontend-test"):
                process.wait_ready(30)
        finally:
            process.stop()


def test_a_process_that_dies_after_the_start_stops_everything(tmp_path) -> None:
    base = free_base()
    run = launcher(base, tmp_path)
    try:
        assert run.stdout is not None
        deadline = time.monotonic() + 120
        for line in run.stdout:  # the summary says where everything is
            if "Passgate is up." in line or time.monotonic() > deadline:
                break
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        started = children(run.pid)
        users = next(pid for pid in started if "services.users" in command_line(pid))
        os.kill(users, signal.SIGKILL)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1
    assert "users-1 exited with code -9" in err and "stopping everything" in err
    for pid in started:  # every other process was stopped too (and reaped, or about to be)
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text()
    assert all(port_is_free("127.0.0.1", base + offset) for offset in (0, 1, 3, 9, 10))


def test_base_port_moves_every_port(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "--base-port", "20000", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    plan = {process["name"]: process for process in json.loads(result.stdout)}
    ports = {
        name: int(process["env"]["PASSGATE_PORT"])
        for name, process in plan.items()
        if "PASSGATE_PORT" in process["env"]
    }
    assert ports == {"gateway-1": 20000, "auth-1": 20001, "users-1": 20002, "orders-1": 20003}
    assert plan["gateway-1"]["env"]["PASSGATE_ADMIN_PORT"] == "20009"
    assert plan["gateway-1"]["env"]["PASSGATE_CORS_ORIGINS"] == "http://localhost:20010,http://127.0.0.1:20011"
    bad = subprocess.run(
        [sys.executable, "-m", "devstack", "--base-port", "65530", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )
    assert bad.returncode == 2 and "--base-port" in bad.stderr
