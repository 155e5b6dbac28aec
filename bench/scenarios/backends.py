"""The resource services' own cost per request (issue 14, item 5): GET /orders,
GET /orders/{id}, GET /users/me and POST /orders straight to the orders and users services,
on SQLite and, when the bench's PostgreSQL answers, on PostgreSQL, each against the bare
backend serving the same body (bench/backends.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import backends
from bench.scenarios import Figures

if TYPE_CHECKING:
    from bench.run import Bench

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def run(ctx: Bench) -> Figures:
    postgres = POSTGRES_ADMIN_URL if await _reachable(POSTGRES_ADMIN_URL) else None
    if postgres is None:
        ctx.note("backends: PostgreSQL at 127.0.0.1:5432 did not answer; SQLite only")
    result = await backends.measure(
        requests=2000, warmup=300, rounds=1, postgres_url=postgres, service_cores=ctx.sut_cores
    )
    print(backends.render(result), flush=True)
    pg = result.get("postgres", {}).get("GET /orders")
    result["orders_list_cpu_us_postgresql"] = pg["cpu_us_per_request"] if pg else None
    return result


async def _reachable(url: str) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True
