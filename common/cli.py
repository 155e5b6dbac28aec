"""What every command line of Passgate shares: a failure to start is one line, not a traceback.

An operator who starts a process with a bad setting, an unreachable database or a port
that is taken needs to read what is wrong and which setting to change; a traceback buries
that under frames of library code. So every `__main__` runs its work through `guarded`,
which turns the errors a configuration or an environment causes into one line on stderr
and an exit code (2: a setting is wrong, 1: the environment refused), and lets every
other exception (a bug) through with its traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web
from opentelemetry.trace import Tracer
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from common.db import migrate_database
from common.logging import configure_logging
from common.runner import listeners, run
from common.settings import DatabaseServiceSettings, ServerSettings, SettingsError
from common.telemetry import start_tracing

EXIT_SETTINGS = 2
EXIT_STARTUP = 1

# Errors of the environment rather than of the code: a database that is down, refuses the
# credentials or does not exist (SQLAlchemy wraps the driver's error), a port taken, a
# host that does not resolve, a connection that timed out.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.DBAPIError,
    OSError,
    TimeoutError,
)


_CONNECTION_ERRORS = (sa_exc.DBAPIError, ConnectionError, TimeoutError, socket.gaierror)


def describe(error: BaseException) -> str:
    """The first line of what went wrong, with the driver's own words for a database error."""
    if isinstance(error, sa_exc.DBAPIError):
        cause = error.orig if error.orig is not None else error
        text = f"the database refused the connection or is unreachable: {cause}"
    elif isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        text = f"a port is taken by another process ({error})"
    else:
        text = str(error) or type(error).__name__
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def database_named(url: str) -> str:
    """A database URL as an operator may see it in an error: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "PASSGATE_DATABASE_URL"


def guarded(
    prog: str,
    work: Callable[[], int | None],
    *,
    settings_errors: tuple[type[BaseException], ...] = (),
    database_url: Callable[[], str | None] = lambda: None,
) -> int:
    """Run `work`; a wrong setting or a refusing environment becomes one line and an exit code.

    `database_url` names the database a failed connection most likely went to (the only
    connection a service makes before it serves), since the driver's error may not say.
    """
    try:
        return work() or 0
    except (SettingsError, *settings_errors) as error:
        for line in str(error).strip().splitlines() or [type(error).__name__]:
            print(f"{prog}: configuration error: {line}", file=sys.stderr)
        return EXIT_SETTINGS
    except ENVIRONMENT_ERRORS as error:
        line = describe(error)
        url = database_url()
        if url and isinstance(error, _CONNECTION_ERRORS):
            line += f" (database {database_named(url)})"
        print(f"{prog}: cannot start: {line}", file=sys.stderr)
        return EXIT_STARTUP


Instrument = Callable[[web.Application, Tracer], None]


def serve(
    service: str,
    app: web.Application,
    server: ServerSettings,
    *,
    instrument: Instrument | None = None,
) -> None:
    """Log as JSON lines, trace when the OTEL_* variables ask for it (common.telemetry;
    `instrument` adds the component's own spans), and serve until SIGTERM or SIGINT."""
    configure_logging(service, server.log_level)
    tracing = start_tracing(service, os.environ)
    if tracing is not None:
        tracing.install(app)
        if instrument is not None:
            instrument(app, tracing.tracer)
    run(listeners(app, server), server)


def database_service_main(
    argv: Sequence[str] | None,
    *,
    service: str,
    settings_from_env: Callable[[os._Environ[str]], DatabaseServiceSettings],
    create_app: Callable[[DatabaseServiceSettings], web.Application],
    migrations_dir: Path,
) -> int:
    """The command line of a service that owns a database: `serve` (default) or `migrate`.

    Arguments are read before the settings, so `--help` works whatever the environment.
    """
    prog = f"python -m services.{service}"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Run the {service} service, or apply its database migrations and exit. "
        "Settings come from PASSGATE_* environment variables (see the README).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve HTTP (default) or apply database migrations and exit",
    )
    args = parser.parse_args(argv)

    database: list[str] = []

    def work() -> int:
        settings = settings_from_env(os.environ)
        database.append(settings.database.url)
        if args.command == "migrate":
            asyncio.run(migrate_database(settings.database, migrations_dir))
            print("migrations applied")
            return 0
        serve(service, create_app(settings), settings.server)
        return 0

    return guarded(prog, work, database_url=lambda: database[0] if database else None)
