"""Settings of the orders service, read once from the environment by __main__."""

from __future__ import annotations

import dataclasses

from common.settings import Env, ServerSettings, env_bool, env_int, env_str

SERVICE = "orders"
DEFAULT_PORT = 8083
DEFAULT_DATABASE_URL = "sqlite:///.data/orders.db"


@dataclasses.dataclass(frozen=True, slots=True)
class OrdersSettings:
    server: ServerSettings
    database_url: str = DEFAULT_DATABASE_URL
    migrate_on_start: bool = True
    database_pool_size: int = 5

    @classmethod
    def from_env(cls, env: Env) -> OrdersSettings:
        return cls(
            server=ServerSettings.from_env(env, service=SERVICE, default_port=DEFAULT_PORT),
            database_url=env_str(env, "PASSGATE_DATABASE_URL", DEFAULT_DATABASE_URL),
            migrate_on_start=env_bool(env, "PASSGATE_MIGRATE_ON_START", True),
            database_pool_size=env_int(
                env, "PASSGATE_DATABASE_POOL_SIZE", 5, minimum=1, maximum=100
            ),
        )
