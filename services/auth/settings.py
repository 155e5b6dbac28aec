"""Settings of the auth service, read once from the environment by __main__."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from common.settings import (
    AssertionSigningSettings,
    AssertionTrustSettings,
    DatabaseSettings,
    Env,
    ServerSettings,
    SettingsError,
    env_bool,
    env_int,
    env_list,
    env_path,
    env_str,
)
from common.scopes import ScopePolicy, default_scope_policy, scope_policy_from_env
from services.auth.external.config import OidcSettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORT = 8081
DEFAULT_DATABASE_URL = "sqlite:///.data/auth.db"
# RFC 9068 access tokens are short-lived by design: they stay valid until `exp` because the
# gateway verifies them without calling auth. The design allows 5 to 15 minutes; values
# down to 5 seconds are accepted so tests and the browser demo can watch a token expire.
ACCESS_TOKEN_TTL_MIN = 5
ACCESS_TOKEN_TTL_MAX = 900
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")


@dataclasses.dataclass(frozen=True, slots=True)
class Argon2Settings:
    """Argon2id cost. The default is OWASP's Password Storage Cheat Sheet's first choice,
    m=19 MiB, t=2, p=1, sized for a pod with one CPU:

    - p=1: more lanes only help with more cores to run them; on one CPU they add
      synchronisation and no attacker cost.
    - The cheat sheet lists m=19 MiB/t=2 with settings it calls equally strong, trading
      memory for passes (46 MiB/t=1 ... 7 MiB/t=5); this one keeps per-hash memory small
      enough for several hashes at once in a small pod without leaning on passes alone.
    - It took 23 ms of one core here, against 160 ms for argon2-cffi's RFC 9106
      low-memory profile (64 MiB, t=3, p=4) used before: a 50-login storm is about
      1.3 s of CPU, which admission (services.auth.accounts.admission) queues instead of refusing.

    Hashes made with other parameters are re-made with these at the next correct login
    (check_needs_rehash), the only moment the password is at hand.
    """

    time_cost: int = 2
    memory_cost: int = 19 * 1024  # KiB
    parallelism: int = 1

    @classmethod
    def from_env(cls, env: Env) -> Argon2Settings:
        parallelism = env_int(
            env, "PASSGATE_ARGON2_PARALLELISM", _default(cls, "parallelism"), minimum=1, maximum=64
        )
        return cls(
            time_cost=env_int(
                env, "PASSGATE_ARGON2_TIME_COST", _default(cls, "time_cost"), minimum=1, maximum=100
            ),
            memory_cost=env_int(
                env,
                "PASSGATE_ARGON2_MEMORY_COST",
                _default(cls, "memory_cost"),
                minimum=8 * parallelism,  # Argon2's own floor: 8 KiB per lane
                maximum=4 * 1024 * 1024,
            ),
            parallelism=parallelism,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class AuthSettings:
    server: ServerSettings
    database: DatabaseSettings = DatabaseSettings(DEFAULT_DATABASE_URL)
    issuer: str = "http://127.0.0.1:8080"
    audience: str = "passgate"
    access_token_ttl: int = 600
    refresh_absolute_ttl: int = 30 * 24 * 3600
    refresh_idle_ttl: int = 7 * 24 * 3600
    signing_keys_dir: Path = Path(".data/keys")
    generate_keys: bool = False
    # A new key is in the JWKS this long before it signs, so every gateway has it cached
    # first; it must exceed the JWKS max-age that gateways honour.
    key_publish_lead: int = 600
    jwks_max_age: int = 300
    token_leeway: int = 30
    key_reload_interval: float = 10.0
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window: int = 300
    login_lockout: int = 300
    users_url: str | None = None
    provisioning_timeout: float = 5.0
    # Auth signs the identity assertion of its provisioning call with a key of its own
    # (issuer passgate-auth, trusted by users), and accepts the gateway's like any backend.
    assertion_signing: AssertionSigningSettings = AssertionSigningSettings()
    assertion_trust: AssertionTrustSettings = AssertionTrustSettings()
    redis_url: str | None = None
    trusted_proxies: tuple[IpNetwork, ...] = tuple(
        ipaddress.ip_network(cidr) for cidr in DEFAULT_TRUSTED_PROXIES
    )
    argon2: Argon2Settings = Argon2Settings()
    oidc: OidcSettings = OidcSettings()  # noqa: RUF009 - frozen, so one shared default is safe
    # Which scopes exist and which roles grant them: PASSGATE_SCOPES_FILE, shared with the gateway.
    scope_policy: ScopePolicy = dataclasses.field(default_factory=default_scope_policy)

    def __post_init__(self) -> None:
        if not ACCESS_TOKEN_TTL_MIN <= self.access_token_ttl <= ACCESS_TOKEN_TTL_MAX:
            raise SettingsError(
                f"PASSGATE_ACCESS_TOKEN_TTL must be "
                f"{ACCESS_TOKEN_TTL_MIN}-{ACCESS_TOKEN_TTL_MAX} seconds"
            )
        if self.refresh_idle_ttl > self.refresh_absolute_ttl:
            raise SettingsError(
                "PASSGATE_REFRESH_IDLE_TTL must not exceed PASSGATE_REFRESH_ABSOLUTE_TTL"
            )
        if self.key_publish_lead < self.jwks_max_age:
            raise SettingsError(
                "PASSGATE_KEY_PUBLISH_LEAD must be at least PASSGATE_JWKS_MAX_AGE, or a gateway "
                "holding a cached key set could meet a token signed by a key it has not seen"
            )

    @property
    def key_retention(self) -> int:
        """Seconds a key stays published after it last signed: the longest token it may have
        signed (the hard cap, not the current setting, which may have been higher) plus leeway."""
        return ACCESS_TOKEN_TTL_MAX + self.token_leeway

    @classmethod
    def from_env(cls, env: Env) -> AuthSettings:
        # Longer than the usual function on purpose: one statement per setting read from
        # the environment, all in one place; helpers would scatter them.
        users_url = env_str(env, "PASSGATE_USERS_URL", "").rstrip("/") or None
        redis_url = env_str(env, "PASSGATE_REDIS_URL", "") or None
        absolute = env_int(
            env, "PASSGATE_REFRESH_ABSOLUTE_TTL", _default(cls, "refresh_absolute_ttl"), minimum=60
        )
        return cls(
            server=ServerSettings.from_env(env, service="auth", default_port=DEFAULT_PORT),
            database=DatabaseSettings.from_env(env, default_url=DEFAULT_DATABASE_URL),
            issuer=env_str(env, "PASSGATE_ISSUER", _default(cls, "issuer")).rstrip("/"),
            audience=env_str(env, "PASSGATE_AUDIENCE", _default(cls, "audience")),
            access_token_ttl=env_int(
                env,
                "PASSGATE_ACCESS_TOKEN_TTL",
                _default(cls, "access_token_ttl"),
                minimum=ACCESS_TOKEN_TTL_MIN,
                maximum=ACCESS_TOKEN_TTL_MAX,
            ),
            refresh_absolute_ttl=absolute,
            refresh_idle_ttl=env_int(
                env,
                "PASSGATE_REFRESH_IDLE_TTL",
                min(_default(cls, "refresh_idle_ttl"), absolute),
                minimum=60,
            ),
            signing_keys_dir=env_path(
                env, "PASSGATE_SIGNING_KEYS_DIR", str(_default(cls, "signing_keys_dir"))
            ),
            generate_keys=env_bool(env, "PASSGATE_GENERATE_KEYS", False),
            key_publish_lead=env_int(
                env, "PASSGATE_KEY_PUBLISH_LEAD", _default(cls, "key_publish_lead"), minimum=0
            ),
            jwks_max_age=env_int(
                env,
                "PASSGATE_JWKS_MAX_AGE",
                _default(cls, "jwks_max_age"),
                minimum=0,
                maximum=86400,
            ),
            token_leeway=env_int(
                env, "PASSGATE_TOKEN_LEEWAY", _default(cls, "token_leeway"), minimum=0, maximum=300
            ),
            key_reload_interval=float(
                env_int(
                    env,
                    "PASSGATE_KEY_RELOAD_INTERVAL",
                    int(_default(cls, "key_reload_interval")),
                    minimum=1,
                )
            ),
            login_max_failures=env_int(
                env, "PASSGATE_LOGIN_MAX_FAILURES", _default(cls, "login_max_failures"), minimum=1
            ),
            login_max_failures_per_address=env_int(
                env,
                "PASSGATE_LOGIN_MAX_FAILURES_PER_ADDRESS",
                _default(cls, "login_max_failures_per_address"),
                minimum=1,
            ),
            login_failure_window=env_int(
                env,
                "PASSGATE_LOGIN_FAILURE_WINDOW",
                _default(cls, "login_failure_window"),
                minimum=1,
            ),
            login_lockout=env_int(
                env, "PASSGATE_LOGIN_LOCKOUT", _default(cls, "login_lockout"), minimum=1
            ),
            users_url=users_url,
            assertion_signing=AssertionSigningSettings.from_env(env),
            assertion_trust=AssertionTrustSettings.from_env(env),
            redis_url=redis_url,
            trusted_proxies=parse_networks(
                env_list(env, "PASSGATE_TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES),
                "PASSGATE_TRUSTED_PROXIES",
            ),
            argon2=Argon2Settings.from_env(env),
            oidc=OidcSettings.from_env(
                env, issuer=env_str(env, "PASSGATE_ISSUER", _default(cls, "issuer")).rstrip("/")
            ),
            scope_policy=scope_policy_from_env(env),
        )


def _default(cls: type, name: str) -> Any:
    # With slots=True the class attribute is a slot descriptor; the default is on the field.
    return cls.__dataclass_fields__[name].default  # type: ignore[attr-defined]


def parse_networks(values: tuple[str, ...], name: str) -> tuple[IpNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(value, strict=False) for value in values)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None
