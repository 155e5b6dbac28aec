"""One module per bench scenario: `async def run(ctx) -> Figures`.

`ctx` is the running bench (bench.run.Bench): the started stack, the bench user's token,
the bare backend, and `ctx.measure(...)`, which records each measured window under its
name. A scenario returns the figures that are not load runs (a dict, stored in the raw
results under the scenario's name) or None. Scenarios use the system's public interfaces
only: its processes, their HTTP APIs and settings, auth's published JWKS.

A scenario module that is not there yet is skipped with a note: bench/backends.py (the
orders and users services' own costs on SQLite and PostgreSQL) plugs in as `backends`.
"""

from __future__ import annotations

from typing import Any

Figures = dict[str, Any] | None


async def run_module(name: str, ctx: Any) -> Figures:
    """Run the scenario module bench.<name> when it exists (a place kept in the sequence for
    a module another change brings); otherwise note that it was not run."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"bench.{name}") is None:
        ctx.note(f"scenario {name} not run: bench/{name}.py is not there yet")
        return None
    module = importlib.import_module(f"bench.{name}")
    run = getattr(module, "run", None)
    if run is None:
        ctx.note(f"scenario {name} not run: bench/{name}.py has no `async def run(ctx)`")
        return None
    figures: Figures = await run(ctx)
    return figures
