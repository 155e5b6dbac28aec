"""CPU per request of the resource services (orders, users), against a bare aiohttp backend.

Each service runs as its own process (`python -m services.<name>`, access log and all, as
deployed) on a free port with a fresh SQLite file, or a fresh PostgreSQL database when an
admin URL is given. One user gets 5 orders and a profile; then N requests of each
operation go straight to the service with the gateway's identity headers, and the
process's utime + stime delta over those N requests (every thread: /proc/<pid>/stat sums
them, the SQLite worker included) is divided by N. The services trust only signed identity
assertions, so the bench holds a gateway and an auth assertion key of its own, as the
gateway and auth do, and the services trust them; the backends' cached check of the
assertion is part of what is measured, as it is behind the gateway. The bare backend (bench.stub_backend)
serves the service's own `GET /orders` body, measured the same way, as the floor.

    python -m bench.backends [--requests N] [--concurrency C] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import procstat
from bench.pyload import build_request, run_load
from common.assertion import AUTH_ISSUER, GATEWAY_ISSUER, AssertionSigner
from common.assertion_keys import ensure_keys
from common.identity import ASSERTION_HEADER, Identity
from devstack.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
USER_SCOPES = frozenset({"users:read", "users:write", "orders:read", "orders:write"})
ORDERS_SEEDED = 5
ORDER_BODY = {
    "items": [
        {"sku": "book-0001", "quantity": 2, "unit_price_cents": 1250},
        {"sku": "pen-0042", "quantity": 1, "unit_price_cents": 199},
    ],
    "note": "leave at the door",
}
# Operation name -> the service it runs on.
OPERATIONS = {
    "GET /orders": "orders",
    "GET /orders/{id}": "orders",
    "GET /users/me": "users",
    "POST /orders": "orders",
}


class BenchError(RuntimeError):
    """A service did not answer a seeding or measured request as it should."""


class Vouching:
    """Signs identity assertions as the gateway (users) and auth (provisioning) would."""

    def __init__(self, workdir: Path) -> None:
        self.trust_dir = workdir / "assertion-trust"
        self._signers = {}
        for issuer in (GATEWAY_ISSUER, AUTH_ISSUER):
            keys_dir = workdir / f"assertion-keys-{issuer}"
            ensure_keys(keys_dir, self.trust_dir, issuer, time.time(), generate=True)
            self._signers[issuer] = AssertionSigner(
                keys_dir, issuer=issuer, audience="passgate-internal", lifetime=60, clock=time.time
            )

    def headers(self, identity: Identity, issuer: str = GATEWAY_ISSUER) -> dict[str, str]:
        """What the gateway sends: the plain fields and a fresh assertion (60 s)."""
        assertion = self._signers[issuer].sign(identity).token
        return {**identity.to_headers(), ASSERTION_HEADER: assertion}


@dataclasses.dataclass(frozen=True, slots=True)
class Windows:
    """How each operation is measured: `rounds` windows of `count` requests at
    `concurrency`, after `warmup` requests."""

    count: int
    warmup: int
    concurrency: int
    rounds: int


@contextlib.contextmanager
def _spawning_on(cores: set[int] | None) -> Iterator[None]:
    if cores:
        with procstat.spawning_on(cores):
            yield
    else:
        yield


def _start(
    name: str,
    args: list[str],
    env: dict[str, str],
    workdir: Path,
    cores: set[int] | None,
    root: Path = ROOT,
) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess(
        name,
        args,
        {"PASSGATE_PORT": str(port), "PYTHONUNBUFFERED": "1", **env},
        ready_url=f"http://127.0.0.1:{port}/readyz",
        log_path=workdir / f"{name}.log",
        cwd=root,  # `python -m` imports the services from here
    )
    with _spawning_on(cores):
        process.start()
    process.wait_ready(60)
    return process, f"http://127.0.0.1:{port}"


async def _exchange(
    url: str, method: str, headers: dict[str, str], body: Any = None
) -> tuple[int, bytes]:
    """One request on its own connection, for seeding (measured load goes through run_load)."""
    data = json.dumps(body).encode() if body is not None else b""
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(build_request(method, url, {**headers, "Connection": "close"}, data))
        raw = await reader.read()  # the server closes after answering
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        raise BenchError(
            f"{method} {url}: a chunked answer, where a Content-Length one was expected"
        )
    return int(head.split(b" ", 2)[1]), payload


async def _drive(
    url: str, method: str, headers: dict[str, str], body: Any, count: int, concurrency: int
) -> dict[str, Any]:
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        headers = {**headers, "Content-Type": "application/json"}
    request = build_request(method, url, headers, data)
    result = await run_load(
        url, concurrency=concurrency, duration=600.0, requests=[request] * count, once=True
    )
    failures = sum(
        result[k]
        for k in ("connect_errors", "read_errors", "write_errors", "http_errors", "timeouts")
    )
    if failures or result["requests"] != count:
        raise BenchError(f"{method} {url}: {failures} failures in {result['requests']} of {count}")
    return result


async def _cpu_per_request(
    pid: int,
    url: str,
    method: str,
    headers: dict[str, str],
    body: Any,
    windows: Windows,
) -> dict[str, Any]:
    """CPU per request over the windows; the least is the figure.

    On a shared machine other work only ever adds to a window's CPU (cache and core
    contention), so the least of a few windows is the closest to the process's own cost.
    """
    count = windows.count
    await _drive(url, method, headers, body, windows.warmup, windows.concurrency)
    measured = []
    for _ in range(windows.rounds):
        before = procstat.cpu_seconds(pid)
        result = await _drive(url, method, headers, body, count, windows.concurrency)
        used = procstat.cpu_seconds(pid) - before
        measured.append(
            (used / count * 1e6, count / result["duration_s"], result["latency_us"]["p50"])
        )
    best = min(measured)
    return {
        "cpu_us_per_request": round(best[0], 1),
        "rounds_cpu_us_per_request": [round(w[0], 1) for w in measured],
        "requests": count,
        "throughput": round(best[1], 1),
        "p50_ms": round(best[2] / 1000, 3),
    }


@contextlib.asynccontextmanager
async def _postgres_databases(admin_url: str, names: list[str]) -> Any:
    """Fresh databases for one run, dropped afterwards; yields their URLs by name."""
    suffix = uuid.uuid4().hex[:10]
    created = {name: f"passgate_bench_{name}_{suffix}" for name in names}
    connection = await asyncpg.connect(admin_url)
    try:
        for database in created.values():
            await connection.execute(f'CREATE DATABASE "{database}"')
        base = admin_url.rsplit("/", 1)[0]
        yield {name: f"{base}/{database}" for name, database in created.items()}
    finally:
        for database in created.values():
            await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await connection.close()


async def _seed(
    base: dict[str, str], identity: Identity, vouching: Vouching
) -> tuple[list[str], bytes]:
    """One user's profile and ORDERS_SEEDED orders: their ids, and the list's body."""
    user_id, headers = identity.subject, vouching.headers(identity)
    provisioner = Identity(user_id, frozenset({"profiles:provision"}), client_id="passgate-auth")
    status, _ = await _exchange(
        f"{base['users']}/internal/profiles/{user_id}",
        "PUT",
        vouching.headers(provisioner, AUTH_ISSUER),
        {"username": "bench-user"},
    )
    if status != 201:
        raise BenchError(f"provisioning the profile answered {status}")
    order_ids = []
    for _ in range(ORDERS_SEEDED):
        status, order = await _exchange(f"{base['orders']}/orders", "POST", headers, ORDER_BODY)
        if status != 201:
            raise BenchError(f"seeding an order answered {status}")
        order_ids.append(json.loads(order)["id"])
    status, list_body = await _exchange(f"{base['orders']}/orders", "GET", headers)
    if status != 200 or len(json.loads(list_body)["items"]) != ORDERS_SEEDED:
        raise BenchError(f"listing the seeded orders answered {status}")
    return order_ids, list_body


async def _measure_services(
    urls: dict[str, str],
    workdir: Path,
    windows: Windows,
    *,
    cores: set[int] | None,
    root: Path,
) -> tuple[dict[str, Any], bytes]:
    identity = Identity(
        str(uuid.uuid4()), USER_SCOPES, client_id="passgate-web", token_id=uuid.uuid4().hex
    )
    vouching = Vouching(workdir)
    processes: dict[str, ManagedProcess] = {}
    try:
        base: dict[str, str] = {}
        for service in ("orders", "users"):
            env = {
                "PASSGATE_DATABASE_URL": urls[service],
                "PASSGATE_ASSERTION_TRUST_DIR": str(vouching.trust_dir),
            }
            processes[service], base[service] = _start(
                service, ["-m", f"services.{service}", "serve"], env, workdir, cores, root
            )
        order_ids, list_body = await _seed(base, identity, vouching)
        plan = {
            "GET /orders": ("GET", f"{base['orders']}/orders", None),
            "GET /orders/{id}": ("GET", f"{base['orders']}/orders/{order_ids[0]}", None),
            "GET /users/me": ("GET", f"{base['users']}/users/me", None),
            # Last: every request adds an order, which the GET /orders runs must not see.
            "POST /orders": ("POST", f"{base['orders']}/orders", ORDER_BODY),
        }
        figures = {}
        for operation, (method, url, body) in plan.items():
            pid = processes[OPERATIONS[operation]].pid
            assert pid is not None
            # A fresh assertion per operation: each lives 60 s, as the gateway's do.
            headers = vouching.headers(identity)
            figures[operation] = await _cpu_per_request(pid, url, method, headers, body, windows)
        return figures, list_body
    finally:
        for process in processes.values():
            process.stop()


async def _measure_bare(
    body: bytes, workdir: Path, windows: Windows, *, cores: set[int] | None
) -> dict[str, Any]:
    body_file = workdir / "orders-body.json"
    body_file.write_bytes(body)
    port = free_port()
    process = ManagedProcess(
        "bare",
        ["-m", "bench.stub_backend", "--port", str(port), "--body-file", str(body_file)],
        {},
        ready_url=f"http://127.0.0.1:{port}/readyz",
        log_path=workdir / "bare.log",
        cwd=ROOT,
    )
    with _spawning_on(cores):
        process.start()
    try:
        process.wait_ready(30)
        assert process.pid is not None
        return await _cpu_per_request(
            process.pid, f"http://127.0.0.1:{port}/orders", "GET", {}, None, windows
        )
    finally:
        process.stop()


async def measure(
    *,
    requests: int = 3000,
    warmup: int = 300,
    concurrency: int = 16,
    rounds: int = 3,
    postgres_url: str | None = None,
    service_cores: set[int] | None = None,
    root: Path = ROOT,
) -> dict[str, Any]:
    """CPU microseconds per request of each operation on SQLite (and PostgreSQL when
    `postgres_url`, an admin connection URL, is given), and of the bare backend: the least
    of `rounds` windows of `requests` requests each, after `warmup` requests.

    `service_cores`: the cores the measured processes run on (the caller's own placement,
    e.g. the load generator on another core); None leaves them unpinned. `root`: the
    checkout whose services run (another one, to compare before and after a change).
    """
    workdir = Path(tempfile.mkdtemp(prefix="passgate-backends-"))
    windows = Windows(count=requests, warmup=warmup, concurrency=concurrency, rounds=rounds)
    try:
        sqlite_urls = {s: f"sqlite:///{workdir / s}.db" for s in ("orders", "users")}
        sqlite, list_body = await _measure_services(
            sqlite_urls, workdir, windows, cores=service_cores, root=root
        )
        bare = await _measure_bare(list_body, workdir, windows, cores=service_cores)
        result: dict[str, Any] = {
            "load": {
                "requests": requests,
                "warmup": warmup,
                "concurrency": concurrency,
                "rounds": rounds,
                "orders_seeded": ORDERS_SEEDED,
                "list_body_bytes": len(list_body),
            },
            "bare_backend": bare,
            "sqlite": sqlite,
        }
        if postgres_url:
            async with _postgres_databases(postgres_url, ["orders", "users"]) as urls:
                result["postgres"], _ = await _measure_services(
                    urls, workdir, windows, cores=service_cores, root=root
                )
        floor = bare["cpu_us_per_request"]
        if not floor:
            # /proc counts CPU in clock ticks (10 ms): too few requests read as none.
            raise BenchError("the bare backend's requests used no measurable CPU; raise --requests")
        result["ratio_to_bare"] = {
            database: {
                op: round(fig["cpu_us_per_request"] / floor, 2)
                for op, fig in result[database].items()
            }
            for database in ("sqlite", "postgres")
            if database in result
        }
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def render(result: dict[str, Any]) -> str:
    databases = [d for d in ("sqlite", "postgres") if d in result]
    lines = [
        "| operation | " + " | ".join(f"{d} us/req (x bare)" for d in databases) + " |",
        "| --- |" + " --- |" * len(databases),
    ]
    for operation in OPERATIONS:
        cells = [
            f"{result[d][operation]['cpu_us_per_request']:.0f} ({result['ratio_to_bare'][d][operation]:.1f}x)"
            for d in databases
        ]
        lines.append(f"| {operation} | " + " | ".join(cells) + " |")
    lines.append(
        f"| bare backend GET | {result['bare_backend']['cpu_us_per_request']:.0f} |"
        + " |" * (len(databases) - 1)
    )
    load = result["load"]
    lines.append(
        f"\nThe least of {load['rounds']} windows of {load['requests']} requests per operation, "
        f"after {load['warmup']} warm-up, "
        f"{load['concurrency']} connections, {load['orders_seeded']} orders listed "
        f"({load['list_body_bytes']} bytes)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backends", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="measured windows; the least counts")
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the checkout whose services run (to compare before and after)",
    )
    parser.add_argument(
        "--postgres-url", help="an admin URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--service-core", type=int, help="pin the measured processes to this core")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args(argv)
    cores = {args.service_core} if args.service_core is not None else None
    if cores and os.cpu_count() and args.service_core >= os.cpu_count():
        parser.error("--service-core names a core this machine does not have")
    result = asyncio.run(
        measure(
            requests=args.requests,
            warmup=args.warmup,
            concurrency=args.concurrency,
            rounds=args.rounds,
            postgres_url=args.postgres_url,
            service_cores=cores,
            root=args.root.resolve(),
        )
    )
    print(render(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
