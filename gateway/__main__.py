"""Run the gateway (`python -m gateway`) or check a routes file (`python -m gateway lint`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.cli import guarded, serve
from common.settings import SettingsError
from gateway.app import create_app
from gateway.cors import CorsPolicy
from gateway.routes import RoutesError, lint, read_routes
from gateway.routing import route_policies
from gateway.settings import GatewaySettings
from gateway.telemetry import instrument


def lint_command(argv: list[str]) -> int:
    """Report routes without auth, unknown scopes and upstreams, unsafe CORS; 1 on errors."""
    parser = argparse.ArgumentParser(prog="python -m gateway lint", description=lint_command.__doc__)
    parser.add_argument("routes_file", nargs="?", help="default: PASSGATE_ROUTES_FILE or the packaged routes.yaml")
    args = parser.parse_args(argv)
    errors = 0
    try:
        settings = GatewaySettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"error: {exc}")
        return 1
    path = Path(args.routes_file) if args.routes_file else settings.routes_file
    try:
        policy = CorsPolicy(settings.cors_origins, allow_credentials=settings.cors_allow_credentials)
    except SettingsError as exc:
        print(f"error: {exc}")
        errors += 1
        policy = None
    try:
        # Read without refusing lint's errors, to list them all; the gateway's start
        # (load_routes) refuses exactly the errors listed here.
        table = read_routes(path, settings.scope_policy.issuable, settings.upstream_overrides)
    except RoutesError as exc:
        for problem in exc.problems:
            print(f"error: {exc.source}: {problem}")
        return 1
    for level, message in lint(
        table,
        cors_origins=settings.cors_origins,
        cors_allow_credentials=settings.cors_allow_credentials,
    ):
        errors += level == "error"
        print(f"{level}: {path}: {message}")
    if policy is not None:
        try:
            route_policies(table, policy)  # per-route CORS may only narrow the global list
        except RoutesError as exc:
            for problem in exc.problems:
                errors += 1
                print(f"error: {path}: {problem}")
    print(f"{path}: {len(table.routes)} routes, {len(table.upstreams)} upstreams, {errors} error(s)")
    return 1 if errors else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Run the gateway, or check a routes file. Settings come from PASSGATE_* "
        "environment variables (see the README).",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="verify tokens and proxy to the services (the default)")
    lint_parser = commands.add_parser("lint", help=lint_command.__doc__, add_help=False)
    lint_parser.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "lint":
        return lint_command(argv[1:])
    _parser().parse_args(argv)  # --help, and unknown arguments refused (exit 2)

    def work() -> None:
        settings = GatewaySettings.from_env(os.environ)
        serve("gateway", create_app(settings), settings.server, instrument=instrument)

    # A broken routes file is a setting to fix: each of its problems on a line of its own.
    return guarded("python -m gateway", work, settings_errors=(RoutesError,))


if __name__ == "__main__":
    sys.exit(main())
