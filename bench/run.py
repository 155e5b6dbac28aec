"""The bench run: start the system, measure each scenario of issues 9 and 14, report.

Placement (2 cores): the load generator and this orchestrator run on the load core, the
processes under test (gateway, backend, nginx, HAProxy, the session proxy) on the other.
Newer scenarios live in bench.scenarios, one module each; this class starts the system,
offers them `measure()` and sequences them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import procstat
from bench.loadgen import LoadGenerator, LoadResult, install_wrk
from bench.nginx import Nginx, install_nginx, render_config
from bench.scenarios import event_loop, haproxy, run_module, scaling, token_bytes
from bench.tokens import mint_tokens, write_tokens
from gateway.routes import load_routes
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT, PortPlan, Stack, StackConfig

PASSWORD = "bench password, long enough"
BENCH_SCOPES = "orders:read orders:write users:read users:write"
SESSION_KEY_PREFIX = "passgate-bench:session:"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"  # the tests use /15
PACKAGED_ROUTES = ROOT / "gateway" / "routes.yaml"
# Rate limits far beyond what a bench can send: the limiter still runs on every request
# (its cost is part of the gateway's), it just never refuses one.
QUIET_PCT = 25.0  # a core busier than this before the start counts as noisy
UNLIMITED = {"requests": 1_000_000_000, "per": 1, "burst": 1_000_000_000}


@dataclasses.dataclass
class Options:
    duration: float = 8.0
    warmup: float = 2.0
    concurrency: int = 64
    token_steps: tuple[int, ...] = (1_000, 10_000, 100_000)
    storm_logins: int = 50
    profile_seconds: float = 10.0
    results_dir: Path = ROOT / "bench" / "results"
    load_core: int = 0
    sut_core: int = 1
    python_load: bool = False
    redis_url: str = DEFAULT_REDIS_URL
    skip: frozenset[str] = frozenset()
    memory_phase_timeout: float = 200.0
    keep: bool = False
    wait_quiet: float = 60.0


@dataclasses.dataclass
class Measured:
    """One measured window: the load generator's figures plus CPU and memory per process."""

    name: str
    load: LoadResult
    cpu_us_per_request: dict[str, float]
    cpu_seconds: dict[str, float]
    rss_mb: dict[str, float]
    foreign_sut_core_pct: float | None  # CPU others used on the SUT core during the window
    placement: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tool": self.load.tool,
            "concurrency": self.load.concurrency,
            "requests": self.load.requests,
            "duration_s": self.load.duration_s,
            "throughput_rps": self.load.throughput,
            "errors": self.load.errors,
            "latency_us": dict(self.load.latency_us),
            "cpu_us_per_request": self.cpu_us_per_request,
            "cpu_seconds": self.cpu_seconds,
            "rss_mb": self.rss_mb,
            "foreign_cpu_on_sut_core_pct": self.foreign_sut_core_pct,
            "placement": self.placement,
        }


def per_core_busy() -> dict[int, float]:
    """Busy seconds of each core so far, from the cpuN lines of /proc/stat."""
    busy = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                v = [int(x) for x in values]
                busy[int(name[3:])] = (sum(v[:8]) - v[3] - v[4]) / procstat.CLOCK_TICKS
    return busy


def find_process(comm: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    return int(entry.name)
    return None


def bench_routes_file(directory: Path) -> Path:
    """The packaged route table with every rate limit raised out of reach."""
    table = yaml.safe_load(PACKAGED_ROUTES.read_text())
    table.setdefault("defaults", {})["rate_limit"] = dict(UNLIMITED)
    for route in table.get("routes", []):
        if "rate_limit" in route:
            route["rate_limit"] = dict(UNLIMITED)
    path = directory / "bench-routes.yaml"
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    return path


def login_route_timeout(routes_file: Path, path: str = "/auth/login") -> float:
    """The timeout of the route that serves POST /auth/login: the first route, in the file's
    order, that is that path or a `/*` prefix of it (the gateway's first-match rule; no
    route template with `{...}` covers it)."""
    for route in load_routes(routes_file).routes:
        prefix = route.path.endswith("/*") and path.startswith(route.path[:-1])
        if "POST" in route.methods and (route.path == path or prefix):
            return route.timeout
    raise LookupError(f"no route serves POST {path}")


class Bench:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.notes: list[str] = []
        self.errors: dict[str, str] = {}
        self.runs: dict[str, Measured] = {}
        self.extra: dict[str, Any] = {}
        self.cleanups: list[Callable[[], Any]] = []
        cores = sorted(os.sched_getaffinity(0))
        self.pinned = len(cores) >= 2 and {options.load_core, options.sut_core} <= set(cores)
        self.load_cores = {options.load_core} if self.pinned else None
        self.sut_cores = {options.sut_core} if self.pinned else set(cores)
        self.all_cores = set(cores)
        self.data_dir = Path(tempfile.mkdtemp(prefix="passgate-bench-"))
        self.stack: Stack | None = None
        self.loadgen: LoadGenerator | None = None
        self.session: aiohttp.ClientSession | None = None

    # -- helpers -----------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def pid(self, name: str) -> int:
        assert self.stack is not None
        pid = self.stack.process(name).pid
        assert pid is not None
        return pid

    def placement(self, unpinned: bool = False) -> str:
        if unpinned or not self.pinned:
            return "unpinned (all cores)"
        return f"load generator on core {self.o.load_core}, processes under test on core {self.o.sut_core}"

    @contextlib.contextmanager
    def on_sut(self) -> Iterator[None]:
        with procstat.spawning_on(self.sut_cores):
            yield

    async def measure(
        self,
        name: str,
        url: str,
        *,
        processes: Mapping[str, Sequence[int]],
        headers: Mapping[str, str] | None = None,
        tokens_file: Path | None = None,
        unpinned: bool = False,
        window: Callable[[str], Awaitable[None]] | None = None,
    ) -> Measured:
        """Warm up, then one measured window; CPU deltas of each process group over it.
        `window` is awaited with "start" and "end" right around the measured window (to
        read counters of the processes under test over exactly that window)."""
        assert self.loadgen is not None
        cores = self.all_cores if unpinned else None
        print(f"- {name}: {url}", flush=True)
        warm = await self.loadgen.run(url, concurrency=self.o.concurrency, duration=self.o.warmup,
                                      headers=headers, tokens_file=tokens_file, cores=cores)
        if warm.requests == 0 or warm.errors > warm.requests // 2:
            raise RuntimeError(f"{name}: warm-up failed ({warm.requests} requests, {warm.errors} errors)")
        if window is not None:
            await window("start")
        cpu0 = {label: procstat.group_cpu_seconds(pids) for label, pids in processes.items()}
        core0 = per_core_busy()
        result = await self.loadgen.run(url, concurrency=self.o.concurrency, duration=self.o.duration,
                                        headers=headers, tokens_file=tokens_file, cores=cores)
        core1 = per_core_busy()
        cpu1 = {label: procstat.group_cpu_seconds(pids) for label, pids in processes.items()}
        if window is not None:
            await window("end")
        cpu = {label: cpu1[label] - cpu0[label] for label in processes}
        rss = {}
        for label, pids in processes.items():
            with contextlib.suppress(OSError):
                rss[label] = sum(procstat.rss_bytes(p) for p in pids) / 2**20
        foreign = None
        if self.pinned and not unpinned:
            sut_busy = core1[self.o.sut_core] - core0[self.o.sut_core]
            ours = sum(cpu.values())
            foreign = max(0.0, (sut_busy - ours) / max(result.duration_s, 1e-9) * 100)
        measured = Measured(
            name=name,
            load=result,
            cpu_us_per_request={k: v / result.requests * 1e6 if result.requests else 0.0 for k, v in cpu.items()},
            cpu_seconds=cpu,
            rss_mb=rss,
            foreign_sut_core_pct=foreign,
            placement=self.placement(unpinned),
        )
        if result.errors:
            self.note(f"{name}: {result.errors} errors of {result.requests} requests")
        self.runs[name] = measured
        cpu_text = ", ".join(f"{k} {v:.0f} us/req" for k, v in measured.cpu_us_per_request.items())
        print(f"  {result.throughput:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms; {cpu_text}"
              + (f"; others used {foreign:.0f}% of the SUT core" if foreign is not None else ""), flush=True)
        return measured

    async def scenario(self, name: str, body: Callable[[], Awaitable[Any]]) -> None:
        """Run one scenario; figures it returns (not load runs) are kept under its name."""
        if name in self.o.skip:
            self.note(f"scenario {name} skipped (--skip)")
            return
        started = time.monotonic()
        try:
            figures = await body()
            if figures is not None:
                self.extra[name] = figures
        except Exception as error:  # one broken scenario must not lose the others' figures
            self.errors[name] = f"{type(error).__name__}: {error}"
            print(f"! {name} failed: {error}\n{traceback.format_exc()}", flush=True)
        finally:
            print(f"  ({name}: {time.monotonic() - started:.0f} s)", flush=True)

    # -- the system --------------------------------------------------------------------

    def start_stack(self) -> None:
        routes = bench_routes_file(self.data_dir)
        config = StackConfig(
            data_dir=self.data_dir,
            ports=PortPlan.free(),
            env={
                # The longest lifetime allowed, so the tokens minted at the start outlive the run.
                "auth": {"PASSGATE_ACCESS_TOKEN_TTL": "900"},
                "gateway": {"PASSGATE_ROUTES_FILE": str(routes)},
            },
        )
        self.stack = Stack(config)
        self.cleanups.append(self.stack.stop)
        print(f"starting the stack in {self.data_dir} ...", flush=True)
        with self.on_sut():
            self.stack.start()

    async def setup_user(self) -> None:
        """One registered user with a few orders; the token the GET runs carry."""
        assert self.stack is not None and self.session is not None
        gw = self.stack.gateway_url
        self.username = f"bench-{uuid.uuid4().hex[:10]}"
        user_id = await self.register(self.username)
        tokens = await self.login(self.username)
        self.token = tokens["access_token"]
        self.user_id = user_id
        body = {"items": [{"sku": "bench-sku", "quantity": 2, "unit_price_cents": 1250}]}
        for _ in range(5):
            async with self.session.post(f"{gw}/orders", json=body, headers=self.bearer(self.token)) as r:
                if r.status != 201:
                    raise RuntimeError(f"placing an order: {r.status} {await r.text()}")
        async with self.session.get(f"{gw}/orders", headers=self.bearer(self.token)) as r:
            if r.status != 200:
                raise RuntimeError(f"listing orders: {r.status} {await r.text()}")
            self.orders_body = await r.read()

    def start_bare_backend(self) -> None:
        """The bare backend answering with the orders backend's own body (bench.stub_backend)."""
        body = self.data_dir / "orders-body.json"
        body.write_bytes(self.orders_body)
        port = free_port()
        self.bare = ManagedProcess("bare-backend", ["-m", "bench.stub_backend", "--port", str(port),
                                                    "--body-file", str(body)], {},
                                   f"http://127.0.0.1:{port}/readyz",
                                   self.data_dir / "logs" / "bare-backend.log", ROOT)
        self.bare_url = f"http://127.0.0.1:{port}"
        with self.on_sut():
            self.bare.start()
        self.cleanups.append(self.bare.stop)
        self.bare.wait_ready(30)
        self.extra["orders_body_bytes"] = len(self.orders_body)

    @property
    def bare_pid(self) -> int:
        assert self.bare.pid is not None
        return self.bare.pid

    def bare_gateway_env(self, **extra: str) -> dict[str, str]:
        return {"PASSGATE_UPSTREAM_ORDERS": self.bare_url, **extra}

    async def register(self, username: str) -> str:
        assert self.stack is not None and self.session is not None
        async with self.session.post(
            f"{self.stack.gateway_url}/auth/register",
            json={"username": username, "password": PASSWORD, "display_name": "Bench"},
        ) as response:
            if response.status != 201:
                raise RuntimeError(f"register: {response.status} {await response.text()}")
            return str((await response.json())["id"])

    async def login(self, username: str) -> dict[str, Any]:
        assert self.stack is not None and self.session is not None
        async with self.session.post(
            f"{self.stack.gateway_url}/auth/login", json={"username": username, "password": PASSWORD}
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"login: {response.status} {await response.text()}")
            return dict(await response.json())

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def backend_headers(self) -> dict[str, str]:
        """What the gateway sends the backend for the bench user (identity and forwarding)."""
        return {
            "X-User-Id": self.user_id,
            "X-User-Scopes": BENCH_SCOPES,
            "X-User-Client-Id": "passgate",
            "X-User-Token-Id": str(uuid.uuid4()),
            "X-Forwarded-For": "127.0.0.1",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "127.0.0.1",
        }

    def spawn_gateway(self, name: str, env: Mapping[str, str], cores: set[int] | None = None) -> int:
        assert self.stack is not None
        with procstat.spawning_on(cores or self.sut_cores):
            process = self.stack.spawn("gateway", name, env=dict(env))
        assert process.pid is not None
        return process.pid

    def stop_process(self, name: str) -> None:
        assert self.stack is not None
        self.stack.process(name).stop()

    # -- scenarios ---------------------------------------------------------------------

    async def orders_backend(self) -> None:
        """Issue 9 item 1 as written: straight to the orders service, and through the gateway."""
        assert self.stack is not None
        orders = self.pid("orders-1")
        await self.measure("direct to orders", f"{self.stack.url('orders')}/orders",
                           processes={"orders": [orders]}, headers=self.backend_headers())
        await self.measure("gateway → orders", f"{self.stack.gateway_url}/orders",
                           processes={"gateway": [self.pid("gateway-1")], "orders": [orders]},
                           headers=self.bearer(self.token))

    async def bare_backend(self) -> None:
        """The same pair with the bare backend: the gateway is then the bottleneck."""
        assert self.stack is not None
        await self.measure("direct to bare backend", f"{self.bare_url}/orders",
                           processes={"backend": [self.bare_pid]}, headers=self.backend_headers())
        await self.measure("gateway → bare", f"{self.stack.process_url('gateway-bare')}/orders",
                           processes={"gateway": [self.pid("gateway-bare")], "backend": [self.bare_pid]},
                           headers=self.bearer(self.token))

    async def token_cache_off(self) -> None:
        pid = self.spawn_gateway("gateway-nocache", self.bare_gateway_env(PASSGATE_TOKEN_CACHE_SIZE="0"))
        try:
            assert self.stack is not None
            await self.measure("gateway → bare, token cache off",
                               f"{self.stack.process_url('gateway-nocache')}/orders",
                               processes={"gateway": [pid], "backend": [self.bare_pid]},
                               headers=self.bearer(self.token))
        finally:
            self.stop_process("gateway-nocache")

    async def nginx(self) -> None:
        assert self.stack is not None
        binary = install_nginx()
        if binary is None:
            raise RuntimeError("nginx is not installed and could not be installed")
        nginx = Nginx(binary, self.data_dir / "nginx", free_port())
        headers = self.backend_headers()
        static = {k: v for k, v in headers.items() if k.startswith("X-User-")}
        config = render_config(nginx.directory, port=nginx.port, upstream=self.bare_url,
                               set_headers=static)
        with self.on_sut():
            nginx.start(config)
        try:
            pids = procstat.descendants(nginx.pid)
            self.extra["nginx"] = {"binary": binary, "processes": len(pids), "config": config}
            await self.measure("nginx → bare", f"{nginx.url}/orders",
                               processes={"nginx": pids, "backend": [self.bare_pid]})
        finally:
            nginx.stop()

    async def floor_proxy(self) -> None:
        """A bare aiohttp proxy (bench.floor_proxy) in front of the same backend."""
        port = free_port()
        args = ["-m", "bench.floor_proxy", "--port", str(port), "--upstream", self.bare_url]
        for name, value in self.backend_headers().items():
            args += ["--header", f"{name}: {value}"]
        proxy = ManagedProcess("floor-proxy", args, {}, f"http://127.0.0.1:{port}/readyz",
                               self.data_dir / "logs" / "floor-proxy.log", ROOT)
        with self.on_sut():
            proxy.start()
        try:
            proxy.wait_ready(30)
            assert proxy.pid is not None
            await self.measure("bare aiohttp proxy → bare", f"http://127.0.0.1:{port}/orders",
                               processes={"aiohttp proxy": [proxy.pid], "backend": [self.bare_pid]})
        finally:
            proxy.stop()

    async def session_lookup(self) -> None:
        import redis.asyncio as redis_asyncio

        assert self.stack is not None
        client = redis_asyncio.from_url(self.o.redis_url)
        prefix = f"{SESSION_KEY_PREFIX}{uuid.uuid4().hex[:8]}:"
        keys: list[str] = []
        try:
            await client.ping()
            # Memory per logged-in user: 100,000 sessions like the one the proxy looks up.
            before = int((await client.info("memory"))["used_memory"])
            count = 100_000
            sample_value = b""
            for start in range(0, count, 5000):
                pipe = client.pipeline(transaction=False)
                for _ in range(min(5000, count - start)):
                    sid = secrets.token_urlsafe(32)
                    value = json.dumps({"sub": str(uuid.uuid4()), "scope": BENCH_SCOPES,
                                        "client_id": "passgate", "created_at": int(time.time())}).encode()
                    sample_value = value
                    keys.append(prefix + sid)
                    pipe.set(prefix + sid, value, ex=3600)
                await pipe.execute()
            after = int((await client.info("memory"))["used_memory"])
            samples = [int(await client.memory_usage(key) or 0) for key in keys[:: count // 200]]
            session_id = secrets.token_urlsafe(32)
            value = json.dumps({"sub": self.user_id, "scope": BENCH_SCOPES, "client_id": "passgate",
                                "created_at": int(time.time())}).encode()
            await client.set(prefix + session_id, value, ex=3600)
            keys.append(prefix + session_id)
            self.extra["sessions"] = {
                "count": count,
                "used_memory_delta_bytes_per_session": (after - before) / count,
                "memory_usage_bytes_per_session": sum(samples) / len(samples),
                "value_bytes": len(sample_value),
                "session_id_chars": len(session_id),
                "redis_url": self.o.redis_url,
            }
            print(f"  Redis: {(after - before) / count:.0f} B per session (used_memory delta), "
                  f"{sum(samples) / len(samples):.0f} B (MEMORY USAGE)", flush=True)

            port, admin = free_port(), free_port()
            env = dict(self.stack.process("gateway-bare").env) | {
                "PASSGATE_PORT": str(port),
                "PASSGATE_ADMIN_PORT": str(admin),
                "PASSGATE_BENCH_SESSION_REDIS_URL": self.o.redis_url,
                "PASSGATE_BENCH_SESSION_PREFIX": prefix,
            }
            proxy = ManagedProcess("session-proxy", ["-m", "bench.session_proxy"], env,
                                   f"http://127.0.0.1:{admin}/readyz",
                                   self.data_dir / "logs" / "session-proxy.log", ROOT)
            with self.on_sut():
                proxy.start()
            try:
                proxy.wait_ready(60)
                assert proxy.pid is not None
                groups: dict[str, list[int]] = {"session proxy": [proxy.pid], "backend": [self.bare_pid]}
                redis_pid = find_process("redis-server")
                if redis_pid is not None:
                    groups["redis (unpinned, shared)"] = [redis_pid]
                await self.measure("session lookup (Redis) → bare", f"http://127.0.0.1:{port}/orders",
                                   processes=groups, headers=self.bearer(session_id))
            finally:
                proxy.stop()
        finally:
            for start in range(0, len(keys), 10000):
                await client.delete(*keys[start : start + 10000])
            await client.aclose()

    async def login_storm(self) -> None:
        assert self.stack is not None and self.session is not None
        users = [f"storm-{uuid.uuid4().hex[:10]}" for _ in range(self.o.storm_logins)]
        for start in range(0, len(users), 5):  # a few at a time: each is an Argon2 hash
            await asyncio.gather(*(self.register(user) for user in users[start : start + 5]))
        gw = self.stack.process_url("gateway-bare")
        url = f"{gw}/orders"
        groups = {"gateway": [self.pid("gateway-bare")], "backend": [self.bare_pid],
                  "auth": [self.pid("auth-1")]}
        storms: dict[str, Any] = {}
        # The gateway answers 504 at the login route's timeout: no login may take longer.
        timeout = login_route_timeout(PACKAGED_ROUTES)
        await self.measure("GETs, no login storm", url, processes=groups, headers=self.bearer(self.token))
        # The first variant is the one judged: Argon2 then takes CPU from the gateway itself,
        # the worst case for the GETs. In the second, auth shares the load generator's core,
        # which slows the load generator too (it is reported, not judged).
        variants = [("auth on the gateway's core", self.sut_cores),
                    ("auth on the load generator's core", self.load_cores)] if self.pinned else [("unpinned", None)]
        for label, cores in variants:
            for name in ("auth-1", "users-1"):
                procstat.pin(self.pid(name), cores or self.all_cores)
            stop = asyncio.Event()
            stats: dict[str, Any] = {"ok": 0, "failed": 0, "latencies": [], "statuses": {}}

            async def storm(user: str) -> None:
                # Each of the 50 clients logs in again as soon as its last login answered:
                # 50 logins are in flight for the whole measured window.
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        async with self.session.post(f"{gw}/auth/login",
                                                     json={"username": user, "password": PASSWORD}) as r:
                            await r.read()
                            status = str(r.status)
                    except aiohttp.ClientError as error:
                        status = type(error).__name__
                    stats["ok" if status == "200" else "failed"] += 1
                    stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
                    stats["latencies"].append(time.perf_counter() - started)

            tasks = [asyncio.create_task(storm(user)) for user in users]
            try:
                await asyncio.sleep(1.0)  # the storm is under way before the GETs start
                await self.measure(f"GETs during a {len(users)}-login storm ({label})", url,
                                   processes=groups, headers=self.bearer(self.token))
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
            latencies = sorted(stats["latencies"])
            storms[label] = {
                "route_timeout_s": timeout,
                "logins_after_route_timeout": sum(1 for t in latencies if t > timeout),
                "logins_ok": stats["ok"],
                "logins_failed": stats["failed"],
                "login_p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
                "login_max_ms": latencies[-1] * 1000 if latencies else None,
                "statuses": stats["statuses"],
            }
            print(f"  storm: {stats['ok']} logins ok, {stats['failed']} failed {stats['statuses']}", flush=True)
        for name in ("auth-1", "users-1"):
            procstat.pin(self.pid(name), self.all_cores)
        self.extra["login_storm"] = storms
        self.extra["auth_busy_after_storm_s"] = await self.wait_idle(self.pid("auth-1"))

    async def wait_idle(self, pid: int, limit: float = 120.0) -> float:
        """Seconds until the process uses under 5 % of a core (bounded by `limit`): auth keeps
        hashing logins whose clients (the gateway, at its route timeout) gave up."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            before = procstat.cpu_seconds(pid)
            await asyncio.sleep(1.0)
            if procstat.cpu_seconds(pid) - before < 0.05:
                break
        waited = time.monotonic() - started
        print(f"  auth busy for {waited:.0f} s after the storm ended", flush=True)
        return waited

    async def memory(self) -> None:
        assert self.stack is not None and self.loadgen is not None
        total = sum(self.o.token_steps)
        auth_env = self.stack.process("auth-1").env
        print(f"- minting {total:,} distinct tokens with auth's key ring ...", flush=True)
        started = time.monotonic()
        tokens = await asyncio.to_thread(mint_tokens, auth_env, total, cores=frozenset(self.all_cores))
        self.extra["mint_seconds"] = time.monotonic() - started
        print(f"  minted in {self.extra['mint_seconds']:.0f} s", flush=True)
        # Unpinned: this scenario measures memory, not speed, and must only be quick.
        pid = self.spawn_gateway("gateway-mem", self.bare_gateway_env(), self.all_cores)
        url = f"{self.stack.process_url('gateway-mem')}/orders"
        admin = self.stack.process("gateway-mem").env["PASSGATE_ADMIN_PORT"]
        warm = write_tokens(self.data_dir / "warm.txt", [self.token] * 500)
        await self.loadgen.run(url, concurrency=self.o.concurrency, duration=30, tokens_file=warm, once=True)
        steps = [{"tokens": 0, "rss_mb": procstat.rss_bytes(pid) / 2**20}]
        offset = 0
        for count in self.o.token_steps:
            path = write_tokens(self.data_dir / f"tokens-{count}.txt", tokens[offset : offset + count])
            offset += count
            result = await self.loadgen.run(url, concurrency=self.o.concurrency, cores=self.all_cores,
                                            duration=self.o.memory_phase_timeout, tokens_file=path, once=True)
            rss = procstat.rss_bytes(pid) / 2**20
            steps.append({"tokens": count, "sent": result.requests, "errors": result.errors,
                          "throughput_rps": result.throughput, "rss_mb": rss,
                          "cache": await self.cache_metrics(int(admin))})
            print(f"  after {count:,} distinct tokens ({result.requests:,} sent, {result.errors} errors, "
                  f"{result.throughput:,.0f}/s): RSS {rss:.1f} MB", flush=True)
            if result.requests < count:
                self.note(f"memory: only {result.requests:,} of {count:,} tokens sent within "
                          f"{self.o.memory_phase_timeout:.0f} s")
        self.stop_process("gateway-mem")
        from bench.tokens import gateway_state_bytes
        from gateway.ratelimit import MAX_MEMORY_BUCKETS
        from gateway.settings import GatewaySettings

        cache_size = GatewaySettings.from_env(self.stack.process("gateway-mem").env).token_cache_size
        entry, bucket = gateway_state_bytes(tokens[:2000])
        # Entries the gateway can hold at once, whatever the number of users: the token
        # cache's cap, and one rate-limit bucket per (route, caller) up to the cap.
        cache_mb = cache_size * entry / 2**20
        bucket_mb = MAX_MEMORY_BUCKETS * bucket / 2**20
        slack_mb = 10.0
        self.extra["memory"] = {
            "steps": steps,
            "cache_size": cache_size,
            "cache_entry_bytes": entry,
            "cache_bound_mb": cache_mb,
            "bucket_cap": MAX_MEMORY_BUCKETS,
            "bucket_bytes": bucket,
            "bucket_bound_mb": bucket_mb,
            "slack_mb": slack_mb,
            "bound_mb": cache_mb + bucket_mb + slack_mb,
            "token_bytes": sum(len(t) for t in tokens[:1000]) / min(1000, len(tokens)),
        }

    async def cache_metrics(self, admin_port: int) -> dict[str, float]:
        assert self.session is not None
        found: dict[str, float] = {}
        async with self.session.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith("gateway_token_cache_lookups_total"):
                    name, value = line.rsplit(" ", 1)
                    found[name.split("result=")[1].strip('"}')] = float(value)
        return found

    async def profile(self) -> None:
        assert self.stack is not None and self.loadgen is not None
        from bench.profile import PySpy, summarise_raw

        spy = PySpy.find()
        if spy is None:
            raise RuntimeError("py-spy is not installed (pip install '.[bench]')")
        pid = self.pid("gateway-bare")
        out = self.data_dir / "gateway-profile.txt"
        print(f"- profiling the gateway (pid {pid}) with py-spy for {self.o.profile_seconds:.0f} s", flush=True)
        load = asyncio.create_task(self.loadgen.run(
            f"{self.stack.process_url('gateway-bare')}/orders", concurrency=self.o.concurrency,
            duration=self.o.profile_seconds + 2, headers=self.bearer(self.token)))
        await asyncio.sleep(1.0)
        await spy.record(pid, out, seconds=self.o.profile_seconds, cores=self.load_cores)
        await load
        self.extra["profile"] = summarise_raw(out.read_text())
        self.extra["profile_raw"] = out
        # The orders backend too, for a shorter time: it decides the gateway → orders figures.
        orders_out = self.data_dir / "orders-profile.txt"
        seconds = max(2.0, self.o.profile_seconds / 2)
        load = asyncio.create_task(self.loadgen.run(
            f"{self.stack.url('orders')}/orders", concurrency=self.o.concurrency,
            duration=seconds + 2, headers=self.backend_headers()))
        await asyncio.sleep(1.0)
        await spy.record(self.pid("orders-1"), orders_out, seconds=seconds, cores=self.load_cores)
        await load
        self.extra["profile_orders"] = summarise_raw(orders_out.read_text(), top=10)

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.UTC)
        before = self.machine_noise_sample()
        wrk = None if self.o.python_load else install_wrk()
        self.loadgen = LoadGenerator(wrk, self.load_cores)
        if not wrk:
            self.note("wrk not available: the Python load generator is used (it may itself be "
                      "the bottleneck for the direct and nginx runs)")
        if self.pinned:
            os.sched_setaffinity(0, self.load_cores or self.all_cores)
        else:
            self.note("fewer than 2 usable cores: nothing is pinned")
        try:
            self.start_stack()
            connector = aiohttp.TCPConnector(limit=200)
            async with aiohttp.ClientSession(connector=connector) as self.session:
                await self.setup_user()
                self.start_bare_backend()
                self.spawn_gateway("gateway-bare", self.bare_gateway_env())
                await self.scenario("orders", self.orders_backend)
                await self.scenario("backends", lambda: run_module("backends", self))
                await self.scenario("gateway", self.bare_backend)
                # Right after the gateway's run: the two event loops in near conditions.
                await self.scenario("event-loop", lambda: event_loop.run(self))
                await self.scenario("cache-off", self.token_cache_off)
                await self.scenario("tokens", lambda: token_bytes.run(self))
                await self.scenario("haproxy", lambda: haproxy.run(self))
                await self.scenario("nginx", self.nginx)
                await self.scenario("floor", self.floor_proxy)
                await self.scenario("session", self.session_lookup)
                await self.scenario("scaling", lambda: scaling.run(self))
                await self.scenario("memory", self.memory)
                await self.scenario("profile", self.profile)
                # Last: auth may go on hashing abandoned logins for a while afterwards.
                await self.scenario("storm", self.login_storm)
        finally:
            for cleanup in reversed(self.cleanups):
                with contextlib.suppress(Exception):
                    cleanup()
            os.sched_setaffinity(0, self.all_cores)
        finished = dt.datetime.now(dt.UTC)
        return {
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "wall_seconds": (finished - started).total_seconds(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "noise_before": before,
                        "load_average_after": procstat.load_average()},
            "placement": self.placement(),
            "load_generator": self.loadgen.tool,
            "concurrency": self.o.concurrency,
            "duration_s": self.o.duration,
            "warmup_s": self.o.warmup,
            "runs": {name: run.as_dict() for name, run in self.runs.items()},
            "extra": {k: v for k, v in self.extra.items() if k != "profile_raw"},
            "notes": self.notes,
            "errors": self.errors,
        }

    def machine_noise_sample(self, seconds: float = 2.0) -> dict[str, Any]:
        """How busy the machine is before the bench starts (other people's tests share it);
        waits up to `wait_quiet` seconds for every core to be under `QUIET_PCT` % busy."""
        waited = 0.0
        while True:
            first, load = per_core_busy(), procstat.load_average()
            time.sleep(seconds)
            second = per_core_busy()
            busy = {core: round((second[core] - first[core]) / seconds * 100, 1) for core in first}
            if max(busy.values()) < QUIET_PCT or waited >= self.o.wait_quiet:
                break
            print(f"machine busy ({busy} %), waiting for it to quieten ...", flush=True)
            time.sleep(5)
            waited += 5 + seconds
        print(f"machine before start: cores busy {busy} %, load average {load}", flush=True)
        if max(busy.values()) >= QUIET_PCT:
            self.note(f"the machine was busy when the bench started ({busy} % per core): "
                      "absolute figures are low; compare the ratios")
        return {"core_busy_pct": busy, "load_average": load, "waited_s": waited}

    def cleanup_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
