"""The command line of a service that owns a database: `serve` (the default) or `migrate`."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

from common.db import migrate_database
from common.logging import configure_logging
from common.runner import listeners, run
from common.settings import DatabaseServiceSettings


def database_service_main(
    argv: Sequence[str] | None,
    *,
    settings_from_env: Callable[[os._Environ[str]], DatabaseServiceSettings],
    create_app: Callable[[DatabaseServiceSettings], web.Application],
    migrations_dir: Path,
) -> None:
    """Read the settings from the environment (the only place that does), then serve or migrate."""
    settings = settings_from_env(os.environ)
    service = settings.server.service
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service}",
        description=f"Run the {service} service, or apply its database migrations and exit.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve HTTP (default) or apply database migrations and exit",
    )
    args = parser.parse_args(argv)
    configure_logging(service, settings.server.log_level)
    if args.command == "migrate":
        asyncio.run(migrate_database(settings.database, migrations_dir))
        return
    app = create_app(settings)
    run(listeners(app, settings.server), settings.server)
