"""Instructions per proxied request of the whole gateway process, counted by callgrind.

CPU time per request moves with whatever else the machine does; an instruction count does
not. This starts the system (auth for the token and its keys), the bare backend, and one
more gateway in front of it under `valgrind --tool=callgrind` with instrumentation off.
After a warm-up it counts two windows of authenticated `GET /orders` at a fixed
concurrency, N and then 2N requests, and reports (second − first) ÷ N: the per-request
cost with the process's fixed and idle work (timers, the metrics thread) cancelled out.

    python -m bench.instructions [--requests 400] [--concurrency 16] [--keep-profile DIR]
                                 [--floor | --backend [--server low-level] [--loop uvloop]]

With --floor the process counted is the bare aiohttp proxy (bench.floor_proxy) in front of
the same backend, sent the same requests: the denominator of issue 14's first target, as
instructions. With --backend it is the bare backend itself (bench.stub_backend), sent the
same requests directly: aiohttp's server answering a fixed body with nothing else, the
least any proxy on aiohttp's server pays for each request before it sends one upstream.
`--server` and `--loop` choose the backend's server (`web.Application`, or aiohttp's
low-level `web.Server`) and event loop, so each of aiohttp's layers can be counted alone.

Kernel work (the send and receive system calls) is not counted: callgrind sees user-space
instructions only. Use it to compare two versions of the code, not two machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp

from bench.run import PASSWORD, bench_routes_file
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT, PortPlan, Stack, StackConfig

TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


async def _load(url: str, headers: Mapping[str, str], requests: int, concurrency: int) -> None:
    """`requests` GETs over `concurrency` keep-alive connections; every answer must be 200."""
    remaining = iter(range(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for _ in remaining:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"GET {url}: {response.status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _token(gateway: str) -> str:
    username = f"instr-{os.getpid()}-{int(time.time())}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway}/auth/register", json={
            "username": username, "password": PASSWORD, "display_name": "Bench"}) as response:
            if response.status != 201:
                raise RuntimeError(f"register: {response.status} {await response.text()}")
        async with session.post(f"{gateway}/auth/login",
                                json={"username": username, "password": PASSWORD}) as response:
            if response.status != 200:
                raise RuntimeError(f"login: {response.status} {await response.text()}")
            return str((await response.json())["access_token"])


def _callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _dumped_total(out_dir: Path, before: set[Path]) -> int:
    """The instruction total of the dump that appeared since `before` was listed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = sorted(set(out_dir.glob("callgrind.out*")) - before)
        for path in new:
            match = TOTALS.search(path.read_bytes())
            if match:
                return int(match.group(1))
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


@contextlib.contextmanager
def _system(data_dir: Path) -> Iterator[Stack]:
    routes = bench_routes_file(data_dir)  # the bench's: limits far beyond what is sent here
    stack = Stack(StackConfig(data_dir=data_dir, ports=PortPlan.free(), env={
        "auth": {"PASSGATE_ACCESS_TOKEN_TTL": "900"},
        "gateway": {"PASSGATE_ROUTES_FILE": str(routes)},
    }))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


GATEWAY, FLOOR, BACKEND = "gateway", "floor", "backend"  # the process counted


async def measure(requests: int, concurrency: int, keep: Path | None, counted: str = GATEWAY,
                  backend_args: tuple[str, ...] = ()) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="passgate-instructions-") as tmp:
        data_dir = Path(tmp)
        with _system(data_dir) as stack:
            token = await _token(stack.gateway_url)
            body = data_dir / "orders-body.json"
            body.write_bytes(b'{"orders": [], "next": null}')
            backend_port = free_port()
            backend_url = f"http://127.0.0.1:{backend_port}"
            backend = ManagedProcess("bare-backend", ["-m", "bench.stub_backend", "--port", str(backend_port),
                                                      "--body-file", str(body)], {}, f"{backend_url}/readyz",
                                     data_dir / "bare-backend.log", ROOT)
            backend.start()
            try:
                backend.wait_ready(30)
                program = {FLOOR: ["-m", "bench.floor_proxy", "--upstream", backend_url],
                           BACKEND: ["-m", "bench.stub_backend", "--body-file", str(body), *backend_args],
                           GATEWAY: ["-m", "gateway"]}[counted]
                return await _count(stack, program, backend_url, token, requests, concurrency, data_dir,
                                    keep)
            finally:
                backend.stop()


async def _count(stack: Stack, program: list[str], backend_url: str, token: str, requests: int,
                 concurrency: int, data_dir: Path, keep: Path | None) -> dict[str, float]:
    """Count `program` (a gateway, or a bench process taking --port) under callgrind."""
    port, admin = free_port(), free_port()
    if program[1] != "gateway":  # the bare proxy, or a second bare backend: the one counted
        program = [*program, "--port", str(port)]
        env, ready = {}, f"http://127.0.0.1:{port}/readyz"
    else:
        env = stack.environment("gateway", port) | {
            "PASSGATE_ADMIN_PORT": str(admin), "PASSGATE_UPSTREAM_ORDERS": backend_url}
        ready = f"http://127.0.0.1:{admin}/readyz"
    out_dir = data_dir / "callgrind"
    out_dir.mkdir()
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out_dir}/callgrind.out.%p", sys.executable, *program]
    with open(data_dir / "callgrind.log", "wb") as log:
        process = subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        await _wait_ready(ready, process)
        url = f"http://127.0.0.1:{port}/orders"
        headers = {"Authorization": f"Bearer {token}"}
        await _load(url, headers, max(200, requests // 2), concurrency)  # warm-up
        totals = []
        for count in (requests, 2 * requests):
            before = set(out_dir.glob("callgrind.out*"))
            _callgrind_control(process.pid, "-z")
            _callgrind_control(process.pid, "-i", "on")
            await _load(url, headers, count, concurrency)
            _callgrind_control(process.pid, "-i", "off")
            _callgrind_control(process.pid, "-d")
            totals.append(_dumped_total(out_dir, before))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for path in out_dir.glob("callgrind.out*"):
                shutil.copy(path, keep / path.name)
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        if process.poll() is None:
            process.kill()
    return {"requests": requests, "concurrency": concurrency,
            "first_window": totals[0], "second_window": totals[1],
            "instructions_per_request": (totals[1] - totals[0]) / requests}


async def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the process under callgrind exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.5)
    raise RuntimeError("the process under callgrind did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--floor", dest="counted", action="store_const", const=FLOOR, default=GATEWAY,
                       help="count the bare aiohttp proxy instead")
    which.add_argument("--backend", dest="counted", action="store_const", const=BACKEND,
                       help="count the bare backend alone (aiohttp's server, a fixed body)")
    parser.add_argument("--server", choices=("application", "low-level"), help="the backend's server (--backend)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), help="the backend's event loop (--backend)")
    parser.add_argument("--keep-profile", type=Path, help="copy callgrind's dumps here")
    args = parser.parse_args(argv)
    backend_args = tuple(f"--{name}={value}" for name in ("server", "loop")
                         if (value := getattr(args, name)) is not None)
    if backend_args and args.counted != BACKEND:
        parser.error("--server and --loop choose the backend counted with --backend")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (with callgrind_control) is not installed", file=sys.stderr)
        return 2
    figures = asyncio.run(measure(args.requests, args.concurrency, args.keep_profile, args.counted, backend_args))
    for name, value in figures.items():
        print(f"{name}: {value:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
