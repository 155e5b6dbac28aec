"""The replica model: gateway and backend replicas needed per 10,000 req/s, from the
per-request CPU costs one bench run measured.

The model is deliberately plain arithmetic, so a reader can redo it with other figures:

    cores    = rate × CPU seconds per request × scaling factor
    replicas = ceil(cores ÷ (CPU per pod × target utilisation))

The scaling factor is the measured CPU per request of each of two SO_REUSEPORT gateway
processes ÷ one process's (1.0 when running more processes costs nothing extra per request;
the gateway shares no per-request state between processes). Backends are sized the same way
from their own CPU per request measured directly (no gateway in front).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

RATE = 10_000  # requests per second the model sizes for
POD_CPU = 1.0  # the CPU limit of one pod in deploy/k8s
UTILISATION = 0.7  # planned busy share of each pod: headroom for bursts and a lost replica


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    cpu_us_per_request: float
    scaling_factor: float = 1.0

    def cores(self, rate: float) -> float:
        return rate * self.cpu_us_per_request / 1e6 * self.scaling_factor

    def replicas(self, rate: float, pod_cpu: float, utilisation: float) -> int:
        return max(1, math.ceil(self.cores(rate) / (pod_cpu * utilisation)))


def model(
    tiers: list[Tier], *, rate: float = RATE, pod_cpu: float = POD_CPU, utilisation: float = UTILISATION
) -> list[dict[str, float]]:
    return [
        {"tier": t.name, "cpu_us_per_request": t.cpu_us_per_request, "scaling_factor": t.scaling_factor,
         "cores": t.cores(rate), "replicas": t.replicas(rate, pod_cpu, utilisation)}
        for t in tiers
    ]


def tiers_from_run(figures: Mapping[str, float | None]) -> list[Tier]:
    """The tiers a run measured: `gateway_us` (saturated, bare backend), `scaling_factor`,
    `orders_us` (GET /orders direct) and any peer edge (`haproxy_us`, `nginx_us`) for
    comparison. Missing figures leave their tier out."""
    tiers = []
    gateway, factor = figures.get("gateway_us"), figures.get("scaling_factor")
    if gateway:
        tiers.append(Tier("gateway (Python, JWT cached)", gateway, max(1.0, factor or 1.0)))
    for key, name in (("haproxy_us", "HAProxy peer (JWT verified every request)"),
                      ("nginx_us", "nginx peer (no JWT)"),
                      ("orders_us", "orders service, GET /orders (SQLite)"),
                      ("orders_pg_us", "orders service, GET /orders (PostgreSQL)")):
        value = figures.get(key)
        if value:
            tiers.append(Tier(name, value))
    return tiers


def explain(rows: list[dict[str, float]], *, rate: float = RATE, pod_cpu: float = POD_CPU,
            utilisation: float = UTILISATION) -> str:
    """The model as text: assumptions first, then one line per tier."""
    lines = [
        f"Replicas per {rate:,.0f} req/s, pods of {pod_cpu:g} CPU planned at {utilisation:.0%} busy: "
        "cores = rate × CPU per request × scaling factor; replicas = ceil(cores ÷ "
        f"({pod_cpu:g} × {utilisation:g})). CPU per request is the saturated figure of this run "
        "(many requests per event-loop wake-up); a replica run far below saturation costs more "
        "per request (up to about 2.5× at one connection), which the utilisation target keeps "
        "replicas away from. The gateway's scaling factor is the measured CPU per request of "
        "each of two SO_REUSEPORT processes ÷ one (at least 1). Auth is not on the per-request "
        "path (verified tokens are cached per replica); it is sized by logins, not by this model. "
        "A database's own CPU is not counted, and SQLite is one file per replica: plan backends "
        "with the PostgreSQL figure where there is one.",
    ]
    for row in rows:
        lines.append(
            f"- {row['tier']}: {row['cpu_us_per_request']:,.0f} µs × {row['scaling_factor']:.2f} → "
            f"{row['cores']:.2f} cores → {int(row['replicas'])} replica(s)"
        )
    return "\n".join(lines)
