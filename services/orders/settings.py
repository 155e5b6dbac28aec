"""Settings of the orders service, read once from the environment by __main__."""

from __future__ import annotations

from common.settings import DatabaseServiceSettings, Env

SERVICE = "orders"
DEFAULT_PORT = 8083

# The orders service needs what every database-owning service needs, and nothing more.
OrdersSettings = DatabaseServiceSettings


def settings_from_env(env: Env) -> OrdersSettings:
    return DatabaseServiceSettings.from_env(env, service=SERVICE, default_port=DEFAULT_PORT)
