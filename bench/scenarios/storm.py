"""A 50-login storm through the gateway while GETs run: how many logins auth answers, how
long they take, whether any outlives the login route's timeout, and what the storm does to
the GETs' latency. It runs last: auth may go on hashing abandoned logins afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from bench import procstat
from bench.scenarios import Figures
from common.scopes import default_scope_policy
from gateway.routes import load_routes

if TYPE_CHECKING:
    from bench.run import Bench

NO_STORM_RUN = "GETs, no login storm"
STORM_RUN_PREFIX = "GETs during a"


def login_route_timeout(routes_file: Path, path: str = "/auth/login") -> float:
    """The timeout of the route that serves POST /auth/login: the first route, in the file's
    order, that is that path or a `/*` prefix of it (the gateway's first-match rule; no
    route template with `{...}` covers it)."""
    for route in load_routes(routes_file, default_scope_policy().issuable).routes:
        prefix = route.path.endswith("/*") and path.startswith(route.path[:-1])
        if "POST" in route.methods and (route.path == path or prefix):
            return route.timeout
    raise LookupError(f"no route serves POST {path}")


@dataclasses.dataclass
class LoginStats:
    """What the storm's logins got back, and how long each took."""

    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    latencies: list[float] = dataclasses.field(default_factory=list)

    def add(self, status: str, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(seconds)

    def summary(self, route_timeout: float) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        ok = self.statuses.get("200", 0)
        return {
            "route_timeout_s": route_timeout,
            "logins_after_route_timeout": sum(1 for t in latencies if t >= route_timeout),
            "logins_ok": ok,
            "logins_failed": len(latencies) - ok,
            "login_p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
            "login_max_ms": latencies[-1] * 1000 if latencies else None,
            "statuses": dict(self.statuses),
        }


async def log_in_until(ctx: Bench, url: str, user: str, stop: asyncio.Event, stats: LoginStats) -> None:
    """One storm client: log in again as soon as the last login answered, until `stop`."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            async with ctx.session.post(url, json={"username": user, "password": ctx.password}) as r:
                await r.read()
                status = str(r.status)
        except aiohttp.ClientError as error:
            status = type(error).__name__
        stats.add(status, time.perf_counter() - started)


async def storm_variant(ctx: Bench, users: list[str], label: str, url: str,
                        groups: dict[str, list[int]]) -> LoginStats:
    """GETs measured while every user's client logs in back to back through the gateway."""
    stop, stats = asyncio.Event(), LoginStats()
    login_url = f"{ctx.stack.process_url('gateway-bare')}/auth/login"
    tasks = [asyncio.create_task(log_in_until(ctx, login_url, user, stop, stats)) for user in users]
    try:
        await asyncio.sleep(1.0)  # the storm is under way before the GETs start
        await ctx.measure(f"{STORM_RUN_PREFIX} {len(users)}-login storm ({label})", url,
                          processes=groups, headers=ctx.bearer(ctx.token))
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"  storm: {stats.statuses}", flush=True)
    return stats


async def wait_idle(pid: int, limit: float = 120.0) -> float:
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


async def run(ctx: Bench) -> Figures:
    users = [f"storm-{uuid.uuid4().hex[:10]}" for _ in range(ctx.o.storm_logins)]
    for start in range(0, len(users), 5):  # a few at a time: each is an Argon2 hash
        await asyncio.gather(*(ctx.register(user) for user in users[start : start + 5]))
    url = f"{ctx.stack.process_url('gateway-bare')}/orders"
    groups = {"gateway": [ctx.pid("gateway-bare")], "backend": [ctx.bare_pid], "auth": [ctx.pid("auth-1")]}
    # The gateway answers 504 at the login route's timeout: no login may take longer.
    timeout = login_route_timeout(ctx.routes_file)
    await ctx.measure(NO_STORM_RUN, url, processes=groups, headers=ctx.bearer(ctx.token))
    # The first variant is the one judged: Argon2 then takes CPU from the gateway itself,
    # the worst case for the GETs. In the second, auth shares the load generator's core,
    # which slows the load generator too (it is reported, not judged).
    variants = [("auth on the gateway's core", ctx.sut_cores),
                ("auth on the load generator's core", ctx.load_cores)] if ctx.pinned else [("unpinned", None)]
    storms: dict[str, Any] = {}
    for label, cores in variants:
        for name in ("auth-1", "users-1"):
            procstat.pin(ctx.pid(name), cores or ctx.all_cores)
        storms[label] = (await storm_variant(ctx, users, label, url, groups)).summary(timeout)
    for name in ("auth-1", "users-1"):
        procstat.pin(ctx.pid(name), ctx.all_cores)
    return {"variants": storms, "auth_busy_after_storm_s": await wait_idle(ctx.pid("auth-1"))}
