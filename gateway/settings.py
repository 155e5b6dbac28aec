"""Gateway settings, read once from the environment by __main__ and passed in frozen."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from common.scopes import ScopePolicy, default_scope_policy, scope_policy_from_env
from common.settings import (
    AssertionSigningSettings,
    Env,
    ServerSettings,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
)
from gateway.routes import UPSTREAM_ENV_PREFIX, replica_problem
from gateway.websocket.settings import WebSocketSettings

DEFAULT_ROUTES_FILE = Path(__file__).with_name("routes.yaml")
DEFAULT_ISSUER = "http://127.0.0.1:8080"
DEFAULT_AUDIENCE = "passgate"
DEFAULT_JWKS_URL = "http://127.0.0.1:8081/.well-known/jwks.json"

# Only asymmetric algorithms: a verifier that accepts HS* can be fed a token "signed" with
# the public key (the RFC 8725 section 2.1 algorithm-confusion attack).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_LEEWAY_SECONDS = 60.0


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything the gateway is configured with; defaults serve the local `make run`."""

    server: ServerSettings = dataclasses.field(
        default_factory=lambda: ServerSettings(service="gateway", port=8080, admin_port=9080)
    )
    routes_file: Path = DEFAULT_ROUTES_FILE
    # Every scope a token can carry (PASSGATE_SCOPES_FILE, shared with auth): a route may
    # require no other, and no other reaches a backend.
    scope_policy: ScopePolicy = dataclasses.field(default_factory=default_scope_policy)
    # Seconds between checks of the routes file for a change (gateway.reload); 0: SIGHUP only.
    routes_watch_seconds: float = 2.0
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_seconds: float = 30.0
    max_token_lifetime_seconds: float = 900.0
    token_cache_size: int = 10_000
    jwks_url: str = DEFAULT_JWKS_URL
    jwks_refresh_seconds: float = 300.0
    jwks_refetch_cooldown_seconds: float = 30.0
    jwks_max_staleness_seconds: float = 3600.0
    jwks_timeout_seconds: float = 5.0
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = 600
    trusted_proxies: tuple[Network, ...] = ()
    redis_url: str | None = None
    upstream_overrides: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    # How every upstream's replicas are found ("static" or "dns"), over each upstream's own
    # `discovery` in the routes file; None keeps the file's. Kubernetes sets dns.
    discovery: str | None = None
    # The gateway's own identity-assertion keys (common.assertion_keys); never auth's.
    assertion: AssertionSigningSettings = AssertionSigningSettings()
    websocket: WebSocketSettings = WebSocketSettings()

    def __post_init__(self) -> None:
        bad = [alg for alg in self.algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if bad or not self.algorithms:
            raise SettingsError(
                "PASSGATE_TOKEN_ALGORITHMS must list asymmetric algorithms only "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}), got {', '.join(bad) or 'none'}"
            )
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise SettingsError(f"PASSGATE_TOKEN_LEEWAY must be 0 to {MAX_LEEWAY_SECONDS:g} seconds")

    @classmethod
    def from_env(cls, env: Env) -> GatewaySettings:
        # The gateway always has an admin listener: /metrics never goes on the public port.
        server = ServerSettings.from_env(
            env, service="gateway", default_port=8080, default_admin_port=9080
        )
        return cls(
            server=server,
            routes_file=Path(env_str(env, "PASSGATE_ROUTES_FILE", str(DEFAULT_ROUTES_FILE))),
            scope_policy=scope_policy_from_env(env),
            routes_watch_seconds=env_float(
                env, "PASSGATE_ROUTES_WATCH_SECONDS", 2.0, minimum=0.0, maximum=3600.0
            ),
            issuer=env_str(env, "PASSGATE_ISSUER", DEFAULT_ISSUER),
            audience=env_str(env, "PASSGATE_AUDIENCE", DEFAULT_AUDIENCE),
            algorithms=env_list(env, "PASSGATE_TOKEN_ALGORITHMS", ("RS256",)),
            leeway_seconds=env_float(
                env, "PASSGATE_TOKEN_LEEWAY", 30.0, minimum=0.0, maximum=MAX_LEEWAY_SECONDS
            ),
            max_token_lifetime_seconds=env_float(
                env, "PASSGATE_TOKEN_MAX_LIFETIME", 900.0, minimum=60.0, maximum=86400.0
            ),
            token_cache_size=env_int(env, "PASSGATE_TOKEN_CACHE_SIZE", 10_000, minimum=0),
            jwks_url=env_str(env, "PASSGATE_JWKS_URL", DEFAULT_JWKS_URL),
            jwks_refresh_seconds=env_float(
                env, "PASSGATE_JWKS_REFRESH_SECONDS", 300.0, minimum=5.0, maximum=86400.0
            ),
            jwks_refetch_cooldown_seconds=env_float(
                env, "PASSGATE_JWKS_REFETCH_COOLDOWN", 30.0, minimum=1.0, maximum=3600.0
            ),
            jwks_max_staleness_seconds=env_float(
                env, "PASSGATE_JWKS_MAX_STALENESS", 3600.0, minimum=60.0, maximum=7 * 86400.0
            ),
            jwks_timeout_seconds=env_float(
                env, "PASSGATE_JWKS_TIMEOUT", 5.0, minimum=0.1, maximum=60.0
            ),
            cors_origins=env_list(env, "PASSGATE_CORS_ORIGINS"),
            cors_allow_credentials=env_bool(env, "PASSGATE_CORS_ALLOW_CREDENTIALS", False),
            cors_max_age_seconds=env_int(
                env, "PASSGATE_CORS_MAX_AGE", 600, minimum=0, maximum=86400
            ),
            trusted_proxies=parse_networks(env_list(env, "PASSGATE_TRUSTED_PROXIES")),
            redis_url=env.get("PASSGATE_REDIS_URL", "").strip() or None,
            upstream_overrides=MappingProxyType(upstream_overrides(env)),
            discovery=_discovery(env),
            assertion=AssertionSigningSettings.from_env(env),
            websocket=WebSocketSettings.from_env(env),
        )


def _discovery(env: Env) -> str | None:
    value = env.get("PASSGATE_DISCOVERY", "").strip().lower()
    if value not in ("", "static", "dns"):
        raise SettingsError(f"PASSGATE_DISCOVERY must be static or dns, got {value!r}")
    return value or None


def parse_networks(items: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as exc:
        raise SettingsError(f"PASSGATE_TRUSTED_PROXIES: {exc}") from None


def upstream_overrides(env: Env) -> dict[str, tuple[str, ...]]:
    """Replica lists from PASSGATE_UPSTREAM_AUTH, _USERS, _ORDERS (any upstream name;
    gateway.routes.override_key says how a variable names one), keyed by lowercase name.

    Each URL is checked here, so a bad one is reported as the variable's fault, not the
    routes file's; whether the name is an upstream of the routes file is checked there.
    """
    overrides = {}
    for name in env:
        if name.startswith(UPSTREAM_ENV_PREFIX):
            replicas = env_list(env, name)
            for replica in replicas:
                problem = replica_problem(replica)
                if problem:
                    raise SettingsError(f"{name}: {problem}")
            if replicas:
                overrides[name[len(UPSTREAM_ENV_PREFIX) :].lower()] = replicas
    return overrides
