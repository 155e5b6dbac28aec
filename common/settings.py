"""Typed settings read from the environment, failing fast with the variable's name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

Env = Mapping[str, str]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env_str(env: Env, name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise SettingsError(f"{name} is required")
    return default


def env_int(
    env: Env, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_float(
    env: Env,
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(env: Env, name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def env_list(env: Env, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Read a comma-separated list, dropping blanks."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def env_path(env: Env, name: str, default: str | None = None) -> Path:
    return Path(env_str(env, name, default))


def env_secret(env: Env, name: str, default: str | None = None) -> str:
    """Read a secret from NAME, or from the file named by NAME_FILE (Kubernetes Secret mounts)."""
    file_name = env.get(f"{name}_FILE", "").strip()
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE cannot be read: {exc.strerror}") from None
    return env_str(env, name, default)


def _event_loop(env: Env) -> str:
    value = env_str(env, "PASSGATE_EVENT_LOOP", "auto").lower()
    if value not in ("auto", "asyncio"):
        raise SettingsError(f"PASSGATE_EVENT_LOOP must be auto or asyncio, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    """What every process needs to serve HTTP: where to listen and how to stop."""

    service: str
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    # On SIGTERM: report unready for drain_seconds while still serving, so load balancers
    # (a Kubernetes Endpoints update, a gateway pool) stop sending; then stop accepting and
    # give in-flight requests up to shutdown_timeout seconds.
    drain_seconds: float = 0.0
    shutdown_timeout: float = 10.0
    reuse_port: bool = False
    # The admin listener serves /healthz, /readyz and /metrics apart from the API, so that
    # a scraper can be let in without being able to reach the API. None: all on `port`.
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    # Seconds a connection has, from its opening or its previous answer, to send a whole
    # request head; then it is closed. Bounds slow-header (slowloris) connections and idle
    # kept-alive ones alike (nginx client_header_timeout, Envoy request_headers_timeout).
    request_head_timeout: float = 10.0
    # "auto": uvloop when installed; "asyncio": the standard loop.
    event_loop: str = "auto"

    @classmethod
    def from_env(
        cls, env: Env, *, service: str, default_port: int, default_admin_port: int | None = None
    ) -> ServerSettings:
        level = env_str(env, "PASSGATE_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"PASSGATE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        host = env_str(env, "PASSGATE_HOST", "127.0.0.1")
        admin_port = env.get("PASSGATE_ADMIN_PORT", "").strip()
        return cls(
            service=service,
            host=host,
            port=env_int(env, "PASSGATE_PORT", default_port, minimum=0, maximum=65535),
            log_level=level,
            drain_seconds=env_float(env, "PASSGATE_DRAIN_SECONDS", 0.0, minimum=0.0, maximum=300.0),
            shutdown_timeout=env_float(
                env, "PASSGATE_SHUTDOWN_TIMEOUT", 10.0, minimum=0.0, maximum=600.0
            ),
            reuse_port=env_bool(env, "PASSGATE_REUSE_PORT", False),
            request_head_timeout=env_float(
                env, "PASSGATE_REQUEST_HEAD_TIMEOUT_SECONDS", 10.0, minimum=0.5, maximum=300.0
            ),
            event_loop=_event_loop(env),
            admin_host=env_str(env, "PASSGATE_ADMIN_HOST", host),
            admin_port=(
                env_int(env, "PASSGATE_ADMIN_PORT", 0, minimum=0, maximum=65535)
                if admin_port
                else default_admin_port
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """The one database a service owns."""

    url: str
    migrate_on_start: bool = True
    pool_size: int = 5  # PostgreSQL connections per process (as many again on overflow)

    @classmethod
    def from_env(cls, env: Env, *, default_url: str) -> DatabaseSettings:
        return cls(
            url=database_url(env_str(env, "PASSGATE_DATABASE_URL", default_url)),
            migrate_on_start=env_bool(env, "PASSGATE_MIGRATE_ON_START", True),
            pool_size=env_int(env, "PASSGATE_DATABASE_POOL_SIZE", 5, minimum=1, maximum=100),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class AssertionTrustSettings:
    """Which identity assertions a backend accepts (common.assertion).

    Without a trust directory the service accepts none: every request that needs an
    identity is a 401, never a request trusted on its plain X-User-* fields.
    """

    trust_dir: Path | None = None
    audience: str = "passgate-internal"
    leeway_seconds: float = 5.0  # clock skew between pods; small, since assertions live 30 s
    cache_size: int = 10_000

    @classmethod
    def from_env(cls, env: Env) -> AssertionTrustSettings:
        trust_dir = env.get("PASSGATE_ASSERTION_TRUST_DIR", "").strip()
        return cls(
            trust_dir=Path(trust_dir) if trust_dir else None,
            audience=env_str(env, "PASSGATE_ASSERTION_AUDIENCE", "passgate-internal"),
            leeway_seconds=env_float(env, "PASSGATE_ASSERTION_LEEWAY", 5.0, minimum=0.0, maximum=60.0),
            cache_size=env_int(env, "PASSGATE_ASSERTION_CACHE_SIZE", 10_000, minimum=0),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class AssertionSigningSettings:
    """The key directory a caller signs identity assertions with (the gateway, auth)."""

    keys_dir: Path | None = None
    trust_dir: Path | None = None  # where generated keys' public halves are written
    generate: bool = False
    lifetime_seconds: float = 30.0
    audience: str = "passgate-internal"

    @classmethod
    def from_env(cls, env: Env) -> AssertionSigningSettings:
        keys_dir = env.get("PASSGATE_ASSERTION_KEYS_DIR", "").strip()
        trust_dir = env.get("PASSGATE_ASSERTION_TRUST_DIR", "").strip()
        return cls(
            keys_dir=Path(keys_dir) if keys_dir else None,
            trust_dir=Path(trust_dir) if trust_dir else None,
            generate=env_bool(env, "PASSGATE_GENERATE_ASSERTION_KEYS", False),
            lifetime_seconds=env_float(
                env, "PASSGATE_ASSERTION_LIFETIME", 30.0, minimum=2.0, maximum=60.0
            ),
            audience=env_str(env, "PASSGATE_ASSERTION_AUDIENCE", "passgate-internal"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseServiceSettings:
    """A service that serves HTTP and owns one database, and needs nothing else (users, orders)."""

    server: ServerSettings
    database: DatabaseSettings
    assertion: AssertionTrustSettings = AssertionTrustSettings()

    @classmethod
    def from_env(cls, env: Env, *, service: str, default_port: int) -> DatabaseServiceSettings:
        return cls(
            server=ServerSettings.from_env(env, service=service, default_port=default_port),
            database=DatabaseSettings.from_env(env, default_url=f"sqlite:///.data/{service}.db"),
            assertion=AssertionTrustSettings.from_env(env),
        )


SUPPORTED_DATABASES = ("sqlite", "postgresql")


def database_url(url: str, name: str = "PASSGATE_DATABASE_URL") -> str:
    """`url` if it names a database Passgate can use (sqlite:///path or postgresql://...)."""
    from sqlalchemy.engine import make_url  # the settings module stays light to import
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise SettingsError(f"{name} is not a database URL") from None
    if backend not in SUPPORTED_DATABASES:
        raise SettingsError(
            f"{name}: unsupported database {backend!r}; use sqlite:///path or postgresql://..."
        )
    return url
