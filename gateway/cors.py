"""CORS that cannot be misconfigured, on top of aiohttp-cors.

Origins come from an explicit list: exact origins (`https://app.example.com`), anchored
wildcard-subdomain patterns (`https://*.example.com` matches one or more labels before
`.example.com`, nothing else), or `*` alone. Patterns are compiled and checked once at
load; `*` together with credentials is refused at load, as is `null`.

aiohttp-cors answers preflights (on each route's OPTIONS, before any token check) and adds
Access-Control-Allow-Origin to responses of its routes, errors included, since it works
from on_response_prepare. What it lacks is added by the gateway's response hook, which
runs after it (gateway.pipeline): `Vary: Origin` on every response, the same allow-origin
headers on responses outside its routes (404, 405, health), and counting of refused origins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import hdrs, web
from aiohttp_cors.urldispatcher_router_adapter import ResourcesUrlDispatcherRouterAdapter

from common.settings import SettingsError

# Errors and rate limits are only useful to a browser app if it may read these.
EXPOSED_HEADERS = (
    "WWW-Authenticate",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "X-Request-Id",
    "Location",
)
ALLOWED_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-Id",
    "traceparent",
    "tracestate",
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


class CorsPolicy:
    """Which origins may read responses, decided by set lookup or a precompiled pattern."""

    def __init__(
        self,
        origins: tuple[str, ...] = (),
        *,
        allow_credentials: bool = False,
        max_age: int = 600,
    ) -> None:
        self.allow_any = False
        self.exact: frozenset[str] = frozenset()
        self.patterns: tuple[re.Pattern[str], ...] = ()
        exact: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for origin in origins:
            if origin == "*":
                if allow_credentials:
                    raise SettingsError(
                        "PASSGATE_CORS_ORIGINS='*' with PASSGATE_CORS_ALLOW_CREDENTIALS=true would "
                        "let any site act with a user's credentials; list the origins instead"
                    )
                self.allow_any = True
            elif "*" in origin:
                patterns.append(_compile_pattern(origin))
            else:
                exact.add(_check_origin(origin))
        self.exact = frozenset(exact)
        self.patterns = tuple(patterns)
        self.allow_credentials = allow_credentials
        self.options = aiohttp_cors.ResourceOptions(
            allow_credentials=allow_credentials,
            expose_headers=EXPOSED_HEADERS,
            allow_headers=ALLOWED_REQUEST_HEADERS,
            max_age=max_age,
        )
        self._expose_value = ",".join(EXPOSED_HEADERS)

    @property
    def enabled(self) -> bool:
        return self.allow_any or bool(self.exact) or bool(self.patterns)

    def allows(self, origin: str) -> bool:
        if origin in self.exact:
            return True
        if origin == "null":
            return False  # sandboxed frames and file: pages share this one value
        if self.allow_any:
            return True
        return any(pattern.fullmatch(origin) for pattern in self.patterns)

    def add_headers(self, response: web.StreamResponse, origin: str) -> None:
        headers = response.headers
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = self._expose_value
        if self.allow_credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"


def _check_origin(origin: str) -> str:
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or origin != origin.lower()
    ):
        raise SettingsError(
            f"PASSGATE_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], lowercase)"
        )
    return origin


def _compile_pattern(origin: str) -> re.Pattern[str]:
    """`https://*.example.com[:port]` -> an anchored regex; anything else with '*' is refused."""
    scheme, sep, rest = origin.partition("://")
    host, _, port = rest.partition(":")
    if (
        not sep
        or scheme not in ("http", "https")
        or not host.startswith("*.")
        or "*" in host[2:]
        or host.count(".") < 2  # *.com would match every .com site
        or (port and not port.isdigit())
    ):
        raise SettingsError(
            f"PASSGATE_CORS_ORIGINS: pattern {origin!r} must look like https://*.example.com"
        )
    _check_origin(f"{scheme}://{host[2:]}" + (f":{port}" if port else ""))
    regex = (
        re.escape(scheme + "://")
        + rf"(?:{_LABEL}\.)+"
        + re.escape(host[2:])
        + (re.escape(":" + port) if port else "")
    )
    return re.compile(regex)


class _AllowedOrigins(Mapping[str, aiohttp_cors.ResourceOptions]):
    """aiohttp-cors looks origins up in a mapping; this one answers from the policy."""

    def __init__(self, policy: CorsPolicy) -> None:
        self._policy = policy

    def __getitem__(self, origin: str) -> aiohttp_cors.ResourceOptions:
        if origin != "*" and self._policy.allows(origin):
            return self._policy.options
        raise KeyError(origin)

    def __contains__(self, origin: object) -> bool:
        return isinstance(origin, str) and origin != "*" and self._policy.allows(origin)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._policy.exact))

    def __len__(self) -> int:
        return len(self._policy.exact)


def setup_cors(app: web.Application, policy: CorsPolicy) -> aiohttp_cors.CorsConfig:
    """Install aiohttp-cors with the policy; gateway.pipeline's response hook completes it.

    The one use of a module aiohttp-cors does not export: its public entry points
    (`aiohttp_cors.setup(app, defaults=...)`, `CorsConfig(app, defaults=...)`) copy the
    defaults into a plain dict of exact origins, so a wildcard-subdomain pattern
    (`https://*.example.com`) could never match. Handing its router adapter our own mapping
    (`_AllowedOrigins`, which answers any origin the policy allows) is the only way to keep
    patterns; `CorsConfig(router_adapter=...)` itself is public.
    """
    adapter = ResourcesUrlDispatcherRouterAdapter(app.router, _AllowedOrigins(policy))
    cors = aiohttp_cors.CorsConfig(app, router_adapter=adapter)
    return cors
