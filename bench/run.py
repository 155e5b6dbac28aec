"""The bench run: start the system, run each scenario of bench.scenarios in order, collect
their figures for the report (bench.summary).

Placement (2 cores): the load generator and this orchestrator run on the load core, the
processes under test (gateway, backend, nginx, HAProxy, the session proxy) on the other.
`Bench` is the context every scenario gets: the started stack, the bench user and its
token, the bare backend, `measure()`, and helpers to start and stop gateway processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import os
import platform
import shutil
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from bench import procstat
from bench.loadgen import LoadGenerator, LoadResult, install_wrk
from bench.scenarios import (
    Figures,
    assertion,
    backends,
    cache_off,
    event_loop,
    floor,
    gateway,
    haproxy,
    memory,
    nginx,
    orders,
    profile,
    scaling,
    session,
    storm,
    token_bytes,
    tracing,
    websocket,
)
from common.assertion import GATEWAY_ISSUER, INTERNAL_AUDIENCE, AssertionSigner
from common.assertion_keys import MAX_ASSERTION_LIFETIME
from common.identity import ASSERTION_HEADER, Identity
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT, PortPlan, Stack, StackConfig

PASSWORD = "bench password, long enough"
BENCH_SCOPES = "orders:read orders:write users:read users:write"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"  # the tests use /15
PACKAGED_ROUTES = ROOT / "gateway" / "routes.yaml"
T = TypeVar("T")
QUIET_PCT = 25.0  # a core busier than this before the start counts as noisy
# Rate limits far beyond what a bench can send: the limiter still runs on every request
# (its cost is part of the gateway's), it just never refuses one.
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
    # The kernel's part of cpu_us_per_request (system time: the socket calls, the wake-ups),
    # which callgrind's instruction counts (bench.instructions) leave out.
    kernel_us_per_request: dict[str, float]
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
            "kernel_us_per_request": self.kernel_us_per_request,
            "cpu_seconds": self.cpu_seconds,
            "rss_mb": self.rss_mb,
            "foreign_cpu_on_sut_core_pct": self.foreign_sut_core_pct,
            "placement": self.placement,
        }


def per_request(seconds: Mapping[str, float], requests: int) -> dict[str, float]:
    """CPU µs per request of each process group (0 when no request was answered)."""
    return {k: v / requests * 1e6 if requests else 0.0 for k, v in seconds.items()}


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


def machine_noise_sample(
    wait_quiet: float, note: Callable[[str], None], seconds: float = 2.0
) -> dict[str, Any]:
    """How busy the machine is before the bench starts (other people's tests share it);
    waits up to `wait_quiet` seconds for every core to be under `QUIET_PCT` % busy."""
    waited = 0.0
    while True:
        first, load = per_core_busy(), procstat.load_average()
        time.sleep(seconds)
        second = per_core_busy()
        busy = {core: round((second[core] - first[core]) / seconds * 100, 1) for core in first}
        if max(busy.values()) < QUIET_PCT or waited >= wait_quiet:
            break
        print(f"machine busy ({busy} %), waiting for it to quieten ...", flush=True)
        time.sleep(5)
        waited += 5 + seconds
    print(f"machine before start: cores busy {busy} %, load average {load}", flush=True)
    if max(busy.values()) >= QUIET_PCT:
        note(f"the machine was busy when the bench started ({busy} % per core): "
             "absolute figures are low; compare the ratios")
    return {"core_busy_pct": busy, "load_average": load, "waited_s": waited}


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


def vouched_identity(keys_dir: Path, user_id: str) -> dict[str, str]:
    """The bench user's identity fields and an assertion signed with the gateway's key in
    `keys_dir`, as the gateway sends them: the backends accept identity from nothing else."""
    identity = Identity(user_id, frozenset(BENCH_SCOPES.split()), "passgate", str(uuid.uuid4()))
    signer = AssertionSigner(keys_dir, issuer=GATEWAY_ISSUER, audience=INTERNAL_AUDIENCE,
                             lifetime=MAX_ASSERTION_LIFETIME, clock=time.time)
    return {**identity.to_headers(), ASSERTION_HEADER: signer.sign(identity).token}


def started(value: T | None, what: str) -> T:
    """`value` once the run has started it; a clear error for a scenario that runs too early."""
    if value is None:
        raise RuntimeError(f"{what} is not started")
    return value


def retry_after_seconds(value: str | None, default: float = 1.0, cap: float = 10.0) -> float:
    """Seconds a Retry-After header asks to wait (delta-seconds form; the default otherwise)."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        seconds = default
    return min(max(seconds, 0.0), cap)


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
        self.routes_file = bench_routes_file(self.data_dir)
        self.password = PASSWORD
        self.scopes = BENCH_SCOPES
        # Set as the run starts them (start_stack, setup_user, start_bare_backend): the
        # properties below fail clearly if a scenario runs before they exist.
        self._stack: Stack | None = None
        self._loadgen: LoadGenerator | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bare: ManagedProcess | None = None
        self.token = self.user_id = self.bare_url = ""
        self.orders_body = b""

    @property
    def stack(self) -> Stack:
        return started(self._stack, "the stack")

    @property
    def loadgen(self) -> LoadGenerator:
        return started(self._loadgen, "the load generator")

    @property
    def session(self) -> aiohttp.ClientSession:
        return started(self._session, "the client session")

    @property
    def bare_pid(self) -> int:
        return self.pid_of(started(self._bare, "the bare backend"))

    # -- helpers -----------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def pid(self, name: str) -> int:
        """The pid of the stack's process `name`."""
        return self.pid_of(self.stack.process(name))

    @staticmethod
    def pid_of(process: ManagedProcess) -> int:
        if process.pid is None:
            raise RuntimeError(f"{process.name} is not running")
        return process.pid

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
        cores = self.all_cores if unpinned else None
        print(f"- {name}: {url}", flush=True)
        warm = await self.loadgen.run(url, concurrency=self.o.concurrency, duration=self.o.warmup,
                                      headers=headers, tokens_file=tokens_file, cores=cores)
        if warm.requests == 0 or warm.errors > warm.requests // 2:
            raise RuntimeError(f"{name}: warm-up failed ({warm.requests} requests, {warm.errors} errors)")
        if window is not None:
            await window("start")
        cpu0 = {label: procstat.group_cpu_times(pids) for label, pids in processes.items()}
        core0 = per_core_busy()
        result = await self.loadgen.run(url, concurrency=self.o.concurrency, duration=self.o.duration,
                                        headers=headers, tokens_file=tokens_file, cores=cores)
        core1 = per_core_busy()
        cpu1 = {label: procstat.group_cpu_times(pids) for label, pids in processes.items()}
        if window is not None:
            await window("end")
        cpu = {label: sum(cpu1[label]) - sum(cpu0[label]) for label in processes}
        kernel = {label: cpu1[label][1] - cpu0[label][1] for label in processes}
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
            cpu_us_per_request=per_request(cpu, result.requests),
            kernel_us_per_request=per_request(kernel, result.requests),
            cpu_seconds=cpu,
            rss_mb=rss,
            foreign_sut_core_pct=foreign,
            placement=self.placement(unpinned),
        )
        if result.errors:
            self.note(f"{name}: {result.errors} errors of {result.requests} requests")
        self.runs[name] = measured
        cpu_text = ", ".join(f"{k} {v:.0f} us/req ({measured.kernel_us_per_request[k]:.0f} in the kernel)"
                             for k, v in measured.cpu_us_per_request.items())
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
        config = StackConfig(
            data_dir=self.data_dir,
            ports=PortPlan.free(),
            env={
                # The longest lifetime allowed, so the tokens minted at the start outlive the run.
                "auth": {"PASSGATE_ACCESS_TOKEN_TTL": "900"},
                "gateway": {"PASSGATE_ROUTES_FILE": str(self.routes_file)},
            },
        )
        self._stack = Stack(config)
        self.cleanups.append(self._stack.stop)
        print(f"starting the stack in {self.data_dir} ...", flush=True)
        with self.on_sut():
            self.stack.start()

    async def setup_user(self) -> None:
        """One registered user with a few orders; the token the GET runs carry."""
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

    def start_python(self, name: str, args: list[str], env: Mapping[str, str], ready_url: str,
                     timeout: float = 30.0) -> ManagedProcess:
        """A Python process of the bench (`python <args>`) on the core under test, once it
        answers `ready_url`; stop() it when done (the run also stops it at the end)."""
        process = ManagedProcess(name, args, dict(env), ready_url, self.data_dir / "logs" / f"{name}.log", ROOT)
        with self.on_sut():
            process.start()
        self.cleanups.append(process.stop)
        process.wait_ready(timeout)
        return process

    def start_bare_backend(self) -> None:
        """The bare backend answering with the orders backend's own body (bench.stub_backend)."""
        body = self.data_dir / "orders-body.json"
        body.write_bytes(self.orders_body)
        port = free_port()
        self.bare_url = f"http://127.0.0.1:{port}"
        self._bare = self.start_python("bare-backend", ["-m", "bench.stub_backend", "--port", str(port),
                                                        "--body-file", str(body)], {}, f"{self.bare_url}/readyz")
        self.extra["orders_body_bytes"] = len(self.orders_body)

    def bare_gateway_env(self, **extra: str) -> dict[str, str]:
        return {"PASSGATE_UPSTREAM_ORDERS": self.bare_url, **extra}

    async def register(self, username: str, attempts: int = 10) -> str:
        """Register a user; a 503 (auth admits only so many hashes at once) is retried after
        its Retry-After, as a well-behaved client would."""
        for _ in range(attempts):
            async with self.session.post(
                f"{self.stack.gateway_url}/auth/register",
                json={"username": username, "password": PASSWORD, "display_name": "Bench"},
            ) as response:
                if response.status == 201:
                    return str((await response.json())["id"])
                if response.status != 503:
                    raise RuntimeError(f"register: {response.status} {await response.text()}")
                delay = retry_after_seconds(response.headers.get("Retry-After"))
            await asyncio.sleep(delay)
        raise RuntimeError(f"register: auth still busy after {attempts} attempts")

    async def login(self, username: str) -> dict[str, Any]:
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
        """What the gateway sends a backend for the bench user: identity, with an assertion
        valid for a minute (call it per run), and forwarding."""
        keys = Path(self.stack.process("gateway-1").env["PASSGATE_ASSERTION_KEYS_DIR"])
        return {**vouched_identity(keys, self.user_id), "X-Forwarded-For": "127.0.0.1",
                "X-Forwarded-Proto": "http", "X-Forwarded-Host": "127.0.0.1"}

    def spawn_gateway(self, name: str, env: Mapping[str, str], cores: set[int] | None = None) -> int:
        """One more gateway process (on the core under test unless `cores` says otherwise)."""
        with procstat.spawning_on(cores or self.sut_cores):
            self.stack.spawn("gateway", name, env=dict(env))
        return self.pid(name)

    def stop_process(self, name: str) -> None:
        self.stack.process(name).stop()

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.UTC)
        before = machine_noise_sample(self.o.wait_quiet, self.note)
        wrk = None if self.o.python_load else install_wrk()
        self._loadgen = LoadGenerator(wrk, self.load_cores)
        if not wrk:
            self.note("wrk not available: the Python load generator is used (it may itself be "
                      "the bottleneck for the direct and nginx runs)")
        if self.pinned:
            os.sched_setaffinity(0, self.load_cores or self.all_cores)
        else:
            self.note("fewer than 2 usable cores: nothing is pinned")
        try:
            self.start_stack()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as self._session:
                await self.setup_user()
                self.start_bare_backend()
                self.spawn_gateway("gateway-bare", self.bare_gateway_env())
                for name, run in SEQUENCE:
                    await self.scenario(name, functools.partial(run, self))
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
            "extra": self.extra,
            "notes": self.notes,
            "errors": self.errors,
        }

    def cleanup_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


# The scenarios in the order they run, by the names --skip takes. The stack, the bench user
# and the bare backend (with its gateway, gateway-bare) are started before the first.
SEQUENCE: tuple[tuple[str, Callable[[Bench], Awaitable[Figures]]], ...] = (
    ("orders", orders.run),
    ("backends", backends.run),
    ("gateway", gateway.run),
    ("event-loop", event_loop.run),  # right after the gateway's run: the loops in near conditions
    ("cache-off", cache_off.run),
    ("tokens", token_bytes.run),
    ("assertion", assertion.run),
    ("tracing", tracing.run),
    ("websocket", websocket.run),
    ("haproxy", haproxy.run),
    ("nginx", nginx.run),
    ("floor", floor.run),
    ("session", session.run),
    ("scaling", scaling.run),
    ("memory", memory.run),
    ("profile", profile.run),
    ("storm", storm.run),  # last: auth may go on hashing abandoned logins for a while afterwards
)
SCENARIO_NAMES = tuple(name for name, _ in SEQUENCE)
