"""One module per bench scenario: `async def run(ctx) -> Figures`.

`ctx` is the running bench (bench.run.Bench): the started stack, the bench user's token,
the bare backend, and `ctx.measure(...)`, which records each measured window under its
name. A scenario returns the figures that are not load runs (a dict, stored in the raw
results under the scenario's name) or None. Scenarios use the system's public interfaces
only: its processes, their HTTP APIs and settings, auth's published JWKS.
"""

from __future__ import annotations

from typing import Any

Figures = dict[str, Any] | None
