"""Findings about a valid route table: 'error' must be fixed, 'note' deserves a look.

The gateway refuses to start with any error listed here (gateway.routes.load_routes), and
`python -m gateway lint` prints them all, so lint and start never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.routes.model import RouteTable

ERROR = "error"
NOTE = "note"


def lint(
    table: RouteTable, *, cors_origins: Iterable[str] = (), cors_allow_credentials: bool = False
) -> list[tuple[str, str]]:
    """Findings as (level, message)."""
    findings: list[tuple[str, str]] = []
    for route in table.routes:
        methods = ", ".join(m for m in route.methods if m != "HEAD" or "GET" not in route.methods)
        if route.public:
            findings.append((NOTE, f"route {route.name!r} ({methods} {route.path}) needs no token"))
            if route.forward_basic_auth:
                findings.append(
                    (
                        NOTE,
                        f"route {route.name!r} passes HTTP Basic credentials to {route.upstream!r}",
                    )
                )
        elif not route.scopes:
            findings.append((NOTE, f"route {route.name!r} accepts any valid token (no scope)"))
        unknown = sorted(route.scopes - table.issuable_scopes)
        if unknown:
            message = (
                f"route {route.name!r} requires {', '.join(unknown)}, "
                "which no token can carry (not in the scopes file, PASSGATE_SCOPES_FILE)"
            )
            findings.append((ERROR, message))
        if route.rate_limit is None:
            findings.append((NOTE, f"route {route.name!r} has no rate limit"))
    used = {route.upstream for route in table.routes}
    for name in sorted(set(table.upstreams) - used):
        findings.append((NOTE, f"upstream {name!r} is defined but no route uses it"))
    for origin in cors_origins:
        if origin == "*" and cors_allow_credentials:
            message = (
                "CORS: PASSGATE_CORS_ORIGINS='*' with PASSGATE_CORS_ALLOW_CREDENTIALS "
                "would let every site act with the user's credentials"
            )
            findings.append((ERROR, message))
    return findings
