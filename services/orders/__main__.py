"""Run the orders service: `python -m services.orders [serve|migrate]` (`--help` says more)."""

from __future__ import annotations

import sys

from common.cli import database_service_main
from services.orders.app import MIGRATIONS_DIR, create_app
from services.orders.settings import settings_from_env


def main(argv: list[str] | None = None) -> int:
    return database_service_main(
        argv,
        service="orders",
        settings_from_env=settings_from_env,
        create_app=create_app,
        migrations_dir=MIGRATIONS_DIR,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
