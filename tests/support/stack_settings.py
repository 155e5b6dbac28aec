"""Settings the tests give the real processes they start: quick hashing, roomy rate limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PACKAGED_ROUTES = Path(__file__).resolve().parents[2] / "gateway" / "routes.yaml"

# Low Argon2 cost keeps registration quick in tests; production keeps the library default.
CHEAP_ARGON2 = {"PASSGATE_ARGON2_TIME_COST": "1", "PASSGATE_ARGON2_MEMORY_COST": "8192"}


def generous_routes(path: Path, **route_overrides: dict[str, Any]) -> Path:
    """The packaged routes with rate limits raised, written to `path`: a test suite registers
    and logs in many users from one address, which the real limits would (rightly) slow.
    `route_overrides` maps a route name to settings replaced in that route."""
    routes = yaml.safe_load(PACKAGED_ROUTES.read_text())
    routes["defaults"]["rate_limit"] = {"requests": 100000, "per": 60, "burst": 10000}
    for route in routes["routes"]:
        if route.get("rate_limit", "off") not in ("off", False, None):
            route.pop("rate_limit")  # the generous default instead; "off" stays off
        route.update(route_overrides.get(route["name"], {}))
    path.write_text(yaml.safe_dump(routes))
    return path
