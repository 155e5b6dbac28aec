"""The whole Passgate system as local processes: N replicas of each service, M gateways.

Used by `make run`, by the end-to-end, browser and scale-out tests, and by the benchmarks,
so that all of them start the system the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg

from devstack.ports import port_is_free
from devstack.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("users", "orders", "auth")
FRONTEND_DIR = ROOT / "frontend"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclasses.dataclass
class PortPlan:
    """Where each process listens. Replica i of a component listens at its base port + 100 * i."""

    gateway: int = 8080
    gateway_admin: int = 9080
    auth: int = 8081
    users: int = 8082
    orders: int = 8083
    frontends: tuple[int, ...] = (3000, 3001, 3002)
    # Explicit ports of further replicas, by (component, replica index).
    replicas: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)

    @classmethod
    def free(cls, replicas: int = 1, gateways: int = 1, frontends: int = 0) -> PortPlan:
        """Ports the OS says are free now, for tests that run beside other stacks."""
        return cls(
            *(free_port() for _ in range(5)),
            frontends=tuple(free_port() for _ in range(frontends)),
            replicas={
                (name, index): free_port()
                for name in ("gateway", "gateway_admin", *SERVICES)
                for index in range(1, max(replicas, gateways))
            },
        )

    @classmethod
    def from_base(cls, base: int) -> PortPlan:
        """`make run BASE_PORT=N`: gateway N, auth N+1, users N+2, orders N+3, the gateway's
        admin port N+9, the browser demo N+10 to N+12 (replicas: + 100 each, as ever)."""
        return cls(
            gateway=base, auth=base + 1, users=base + 2, orders=base + 3, gateway_admin=base + 9,
            frontends=(base + 10, base + 11, base + 12),
        )

    def port(self, name: str, index: int = 0) -> int:
        if (name, index) in self.replicas:
            return self.replicas[(name, index)]
        return int(getattr(self, name)) + 100 * index


@dataclasses.dataclass
class StackConfig:
    data_dir: Path
    ports: PortPlan = dataclasses.field(default_factory=PortPlan)
    replicas: int = 1
    gateways: int = 1
    db: str = "sqlite"  # or "postgres"
    postgres_url: str = DEFAULT_POSTGRES_URL
    database_prefix: str = "passgate"
    redis_url: str | None = None
    host: str = "127.0.0.1"
    log_level: str = "INFO"
    # Extra environment per component ("gateway", "auth", "users", "orders") or "all".
    env: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    # Extra environment for one process by name ("orders-2", "gateway-1"), applied last.
    process_env: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    # PASSGATE_DATABASE_POOL_SIZE of every service replica (None: the service's default).
    # N replicas of 3 services share one PostgreSQL server and its max_connections.
    database_pool_size: int | None = None
    # Frontend origins served from ./frontend: the first two are on the gateway's CORS
    # allowlist, the third is deliberately not, to show a refused origin.
    serve_frontend: bool = False


class Stack:
    """Starts, inspects and stops every process of a local Passgate system."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: dict[str, ManagedProcess] = {}
        # Public base URL of each process by name, including processes added by spawn().
        self._urls: dict[str, str] = {}

    # -- addresses ---------------------------------------------------------------------

    def url(self, name: str, index: int = 0) -> str:
        return f"http://{self.config.host}:{self.config.ports.port(name, index)}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    def gateway_urls(self) -> list[str]:
        return [self.url("gateway", i) for i in range(self.config.gateways)]

    def replica_urls(self, service: str) -> list[str]:
        return [self.url(service, i) for i in range(self.config.replicas)]

    @property
    def frontend_origins(self) -> list[str]:
        ports = self.config.ports.frontends
        hosts = ("localhost", "127.0.0.1", "127.0.0.1")
        return [f"http://{host}:{port}" for host, port in zip(hosts, ports, strict=False)]

    @property
    def allowed_origins(self) -> list[str]:
        return self.frontend_origins[:2]

    @property
    def issuer(self) -> str:
        return self.gateway_url

    # -- environment -------------------------------------------------------------------

    def database_url(self, service: str) -> str:
        if self.config.db == "postgres":
            return self.config.postgres_url.rsplit("/", 1)[0] + f"/{self.config.database_prefix}_{service}"
        return f"sqlite:///{self.config.data_dir / f'{service}.db'}"

    def environment(self, component: str, port: int, index: int = 0) -> dict[str, str]:
        """The settings a process of `component` listening on `port` starts with."""
        env = {
            "PASSGATE_HOST": self.config.host,
            "PASSGATE_PORT": str(port),
            "PASSGATE_LOG_LEVEL": self.config.log_level,
            "PASSGATE_ISSUER": self.issuer,
            "PASSGATE_AUDIENCE": "passgate",
        }
        if self.config.redis_url:
            env["PASSGATE_REDIS_URL"] = self.config.redis_url
        # Every component trusts the assertion keys in one directory; the gateway and auth
        # each generate their own key there on first start (backends re-read it on rotation).
        env["PASSGATE_ASSERTION_TRUST_DIR"] = str(self.config.data_dir / "assertion-trust")
        if component in ("gateway", "auth"):
            env["PASSGATE_ASSERTION_KEYS_DIR"] = str(self.config.data_dir / f"assertion-keys-{component}")
            env["PASSGATE_GENERATE_ASSERTION_KEYS"] = "true"
        if component in SERVICES:
            env["PASSGATE_DATABASE_URL"] = self.database_url(component)
            if self.config.database_pool_size is not None:
                env["PASSGATE_DATABASE_POOL_SIZE"] = str(self.config.database_pool_size)
        if component == "auth":
            env["PASSGATE_SIGNING_KEYS_DIR"] = str(self.config.data_dir / "keys")
            env["PASSGATE_GENERATE_KEYS"] = "true"
            env["PASSGATE_USERS_URL"] = self.url("users")
        if component == "gateway":
            # Gateway i reads the key set from auth replica i (modulo): no single auth
            # replica is every gateway's source of keys.
            source = self.url("auth", index % self.config.replicas)
            env["PASSGATE_JWKS_URL"] = f"{source}/.well-known/jwks.json"
            env["PASSGATE_CORS_ORIGINS"] = ",".join(self.allowed_origins)
            for service in SERVICES:
                env[f"PASSGATE_UPSTREAM_{service.upper()}"] = ",".join(self.replica_urls(service))
        env.update(self.config.env.get("all", {}))
        env.update(self.config.env.get(component, {}))
        return env

    # -- lifecycle ---------------------------------------------------------------------

    def _process(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        ready_url: str,
        ports: tuple[int, ...] = (),
    ) -> ManagedProcess:
        log = self.config.data_dir / "logs" / f"{name}.log"
        env = env | dict(self.config.process_env.get(name, {}))
        if "PASSGATE_PORT" in env:
            self._urls[name] = f"http://{self.config.host}:{env['PASSGATE_PORT']}"
        ports = ports or tuple(
            int(env[key])
            for key in ("PASSGATE_PORT", "PASSGATE_ADMIN_PORT")
            if env.get(key, "").isdigit()
        )
        return ManagedProcess(name, args, env, ready_url, log, ROOT, ports=ports)

    def _groups(self) -> Iterator[list[ManagedProcess]]:
        """Processes in start order; each group is ready before the next starts. The services
        start together (auth needs users only when someone registers); the gateways after
        them, since a gateway's readiness needs auth's key set."""
        host = self.config.host
        services = []
        for service in SERVICES:
            for index in range(self.config.replicas):
                port = self.config.ports.port(service, index)
                services.append(
                    self._process(
                        f"{service}-{index + 1}",
                        ["-m", f"services.{service}"],
                        self.environment(service, port),
                        f"http://{host}:{port}/readyz",
                    )
                )
        yield services
        gateways = []
        for index in range(self.config.gateways):
            port = self.config.ports.port("gateway", index)
            admin = self.config.ports.port("gateway_admin", index)
            env = self.environment("gateway", port, index) | {"PASSGATE_ADMIN_PORT": str(admin)}
            gateways.append(
                self._process(f"gateway-{index + 1}", ["-m", "gateway"], env, f"http://{host}:{admin}/readyz")
            )
        yield gateways
        if self.config.serve_frontend:
            yield [
                self._process(
                    f"frontend-{port}",
                    ["-m", "devstack.static", "--port", str(port), "--origin", origin,
                     "--gateway", self.gateway_url, "--root", str(FRONTEND_DIR)],
                    {},
                    f"http://127.0.0.1:{port}/healthz",
                    ports=(port,),
                )
                for origin, port in zip(self.frontend_origins, self.config.ports.frontends, strict=True)
            ]

    def plan(self) -> list[dict[str, Any]]:
        """What start() would run, in order, without starting anything (`--dry-run`)."""
        return [
            {
                "name": process.name,
                "command": ["python", *process.args],
                "env": dict(sorted(process.env.items())),
                "ready_url": process.ready_url,
            }
            for group in self._groups()
            for process in group
        ]

    def taken_ports(self) -> list[str]:
        """The planned ports another listener holds now, each with the process it was for."""
        return [
            f"port {port} ({process.name})"
            for group in self._groups()
            for process in group
            for port in process.ports
            if not port_is_free(self.config.host, port)
        ]

    def start(self, timeout: float = 60.0) -> None:
        taken = self.taken_ports()
        if taken:
            raise RuntimeError(
                f"{', '.join(taken)}: taken by another process; stop it, or choose other ports "
                "(make run BASE_PORT=...)"
            )
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.db == "postgres":
            asyncio.run(self._create_databases())
        try:
            for group in self._groups():
                for process in group:
                    self.processes[process.name] = process
                    process.start()
                for process in group:
                    process.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    # -- one process at a time (fault injection, rolling restarts) -----------------------

    def process(self, name: str) -> ManagedProcess:
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"no process {name!r}; there are {sorted(self.processes)}") from None

    def names(self, component: str) -> list[str]:
        """Names of a component's processes in replica order: names("users") -> users-1, ..."""
        return sorted(
            (name for name in self.processes if name.rsplit("-", 1)[0] == component),
            key=lambda name: int(name.rsplit("-", 1)[1]) if name.rsplit("-", 1)[1].isdigit() else 0,
        )

    def process_url(self, name: str) -> str:
        """The public base URL of one process (a gateway's public port, a replica's port)."""
        return self._urls[name]

    def remove(self, name: str) -> int | None:
        """Stop one process (if it runs) and forget it: revive() and stop() no longer see it."""
        code = self.process(name).stop()
        del self.processes[name]
        return code

    def kill(self, name: str) -> int | None:
        """SIGKILL one process (a crash: no drain, in-flight requests are cut). Returns its code."""
        return self.process(name).kill()

    def terminate(self, name: str, timeout: float = 30.0) -> int:
        """SIGTERM one process and wait for its graceful exit. Returns its exit code."""
        process = self.process(name)
        process.signal(signal.SIGTERM)
        return process.wait_exit(timeout)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stop one process gracefully if it runs, start it again as before, wait until ready."""
        self.process(name).restart(timeout)

    def revive(self, timeout: float = 60.0) -> list[str]:
        """Start again every process that is not running: dead services together, then dead
        gateways (then frontends), each tier ready before the next. Returns their names."""
        dead = [process for process in self.processes.values() if not process.running]
        tiers = (
            [p for p in dead if not p.name.startswith(("gateway", "frontend"))],
            [p for p in dead if p.name.startswith("gateway")],
            [p for p in dead if p.name.startswith("frontend")],
        )
        for tier in tiers:
            for process in tier:
                process.start()
            for process in tier:
                process.wait_ready(timeout)
        return [process.name for tier in tiers for process in tier]

    def spawn(
        self, component: str, name: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> ManagedProcess:
        """Start one more process of a component on free ports, with extra environment
        (another gateway in front of chosen upstreams, a replica on another database).
        It is stopped with the rest by stop()."""
        if name in self.processes:
            raise ValueError(f"a process named {name!r} exists already")
        port = free_port(self.config.host)
        extra = dict(env or {})
        if component == "gateway":
            admin = free_port(self.config.host)
            full = self.environment("gateway", port) | {"PASSGATE_ADMIN_PORT": str(admin)} | extra
            ready = f"http://{self.config.host}:{full['PASSGATE_ADMIN_PORT']}/readyz"
            args = ["-m", "gateway"]
        elif component in SERVICES:
            full = self.environment(component, port) | extra
            ready = f"http://{self.config.host}:{full['PASSGATE_PORT']}/readyz"
            args = ["-m", f"services.{component}"]
        else:
            raise ValueError(f"unknown component {component!r}")
        process = self._process(name, args, full, ready)
        self.processes[name] = process
        process.start()
        process.wait_ready(timeout)
        return process

    def exited(self) -> list[ManagedProcess]:
        """Processes that were started and are no longer running."""
        return [
            process
            for process in self.processes.values()
            if process.process is not None and not process.running
        ]

    def stop(self) -> dict[str, int | None]:
        """Stop the gateways and frontends first (no new traffic), then the services; the
        processes of each tier stop together. Returns exit codes (of the last run, for a
        process that had already exited)."""
        codes: dict[str, int | None] = {}
        front = sorted(n for n in self.processes if n.startswith(("frontend", "gateway")))
        back = sorted(n for n in self.processes if n not in front)
        for tier in (front, back):
            for name in tier:
                self.processes[name].signal(signal.SIGTERM)
            for name in tier:
                codes[name] = self.processes[name].reap()
        return codes

    async def _create_databases(self) -> None:
        connection = await asyncpg.connect(self.config.postgres_url)
        try:
            for service in SERVICES:
                name = f"{self.config.database_prefix}_{service}"
                exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if not exists:
                    await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    async def drop_databases(self) -> None:
        connection = await asyncpg.connect(self.config.postgres_url)
        try:
            for service in SERVICES:
                name = f"{self.config.database_prefix}_{service}"
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
