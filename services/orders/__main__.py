"""Run the orders service: `python -m services.orders [serve|migrate]`.

The only module that reads the environment (see settings.py for every variable).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from common.db import create_engine, migrate
from common.logging import configure_logging
from common.runner import listeners, run
from services.orders.app import MIGRATIONS_DIR, create_app
from services.orders.settings import SERVICE, OrdersSettings


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine, MIGRATIONS_DIR)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.orders", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve HTTP (default) or apply database migrations and exit",
    )
    args = parser.parse_args(argv)
    settings = OrdersSettings.from_env(os.environ)
    configure_logging(SERVICE, settings.server.log_level)
    if args.command == "migrate":
        asyncio.run(_migrate(settings.database_url))
        return
    app = create_app(settings)
    run(listeners(app, settings.server), settings.server)


if __name__ == "__main__":
    main()
