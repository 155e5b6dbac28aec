"""Settings of the users service, read once from the environment by __main__."""

from __future__ import annotations

from common.settings import DatabaseServiceSettings, Env

SERVICE = "users"
DEFAULT_PORT = 8082

# The users service needs what every database-owning service needs, and nothing more.
UsersSettings = DatabaseServiceSettings


def settings_from_env(env: Env) -> UsersSettings:
    return DatabaseServiceSettings.from_env(env, service=SERVICE, default_port=DEFAULT_PORT)
