"""Run the users service: `python -m services.users [serve|migrate]` (`--help` says more)."""

from __future__ import annotations

import sys

from common.cli import database_service_main
from services.users.app import MIGRATIONS_DIR, create_app
from services.users.settings import settings_from_env


def main(argv: list[str] | None = None) -> int:
    return database_service_main(
        argv,
        service="users",
        settings_from_env=settings_from_env,
        create_app=create_app,
        migrations_dir=MIGRATIONS_DIR,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
