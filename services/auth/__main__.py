"""Run the auth service, or one of its operator commands.

    python -m services.auth                         serve (default)
    python -m services.auth migrate                 apply database migrations and exit
    python -m services.auth rotate-keys [--lead S]  add a signing key: published now, signs after S
    python -m services.auth create-client ID --scope "orders:read ..." [--introspect]
                                                    create a machine client; prints its secret once
                                                    (--introspect: a resource server, RFC 7662)
    python -m services.auth set-role USERNAME admin|user

This is the only module that reads os.environ.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from common.cli import guarded, serve
from common.db import create_engine, migrate, migrate_database
from common.timestamps import rfc3339, utc_now
from services.auth.accounts.repository import AccountRepository
from services.auth.accounts.roles import (
    InvalidScopeError,
    format_scope,
    parse_scope,
)
from services.auth.app import MIGRATIONS_DIR, create_app
from services.auth.keyring.signing_keys import KeySetError, rotate
from services.auth.settings import AuthSettings
from services.auth.tokens.clients import CLIENT_ID_PATTERN, ClientRepository
from services.auth.tokens.minter import FIRST_PARTY_CLIENT_ID
from services.auth.tokens.opaque import CLIENT_SECRET_PREFIX, new_secret, opaque_hash



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.auth", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP (the default)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    rotate_parser = commands.add_parser("rotate-keys", help="add a new signing key")
    rotate_parser.add_argument(
        "--lead",
        type=int,
        default=None,
        help="seconds before it signs (default PASSGATE_KEY_PUBLISH_LEAD)",
    )
    client = commands.add_parser("create-client", help="create a machine client")
    client.add_argument("client_id")
    client.add_argument("--scope", help="space-separated scopes the client may get")
    client.add_argument(
        "--introspect",
        action="store_true",
        help="a resource server: may call the introspection endpoint (--scope then optional)",
    )
    role = commands.add_parser("set-role", help="set a user's role")
    role.add_argument("username")
    role.add_argument("role", help="a role of the scopes file (PASSGATE_SCOPES_FILE)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    database: list[str] = []

    def work() -> int:
        settings = AuthSettings.from_env(os.environ)
        database.append(settings.database.url)
        command = args.command or "serve"
        if command == "serve":
            serve("auth", create_app(settings), settings.server)
            return 0
        if command == "rotate-keys":
            return _rotate_keys(settings, args.lead)
        return asyncio.run(_database_command(settings, args))

    # A key set that is missing (and may not be generated) is a setting to fix.
    return guarded(
        "python -m services.auth",
        work,
        settings_errors=(KeySetError,),
        database_url=lambda: database[0] if database else None,
    )


def _rotate_keys(settings: AuthSettings, lead: int | None) -> int:
    lead_seconds = settings.key_publish_lead if lead is None else lead
    if lead_seconds < settings.jwks_max_age:
        print(
            f"--lead must be at least PASSGATE_JWKS_MAX_AGE ({settings.jwks_max_age} s)",
            file=sys.stderr,
        )
        return 2
    try:
        key = rotate(
            settings.signing_keys_dir,
            utc_now(),
            lead=dt.timedelta(seconds=lead_seconds),
            retention=dt.timedelta(seconds=settings.key_retention),
        )
    except KeySetError as error:
        print(f"rotate-keys: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "kid": key.kid,
                "published_at": rfc3339(key.created_at),
                "signs_from": rfc3339(key.not_before),
            }
        )
    )
    return 0


async def _database_command(settings: AuthSettings, args: argparse.Namespace) -> int:
    if args.command == "migrate":
        await migrate_database(settings.database, MIGRATIONS_DIR)
        print("migrations applied")
        return 0
    missing = _missing_sqlite_file(settings.database.url)
    if missing is not None:
        # Opening it would create an empty database and act on that: the usual cause is
        # a command run from another directory than the service, with the default URL.
        print(
            f"{args.command}: no auth database at {missing}; run this where the service "
            "runs, or set PASSGATE_DATABASE_URL to its database",
            file=sys.stderr,
        )
        return 1
    engine = create_engine(settings.database.url, pool_size=1)
    try:
        if not await _has_accounts_table(engine):
            print(
                f"{args.command}: the database at PASSGATE_DATABASE_URL has no auth tables; "
                "is it auth's database? (`python -m services.auth migrate` creates them)",
                file=sys.stderr,
            )
            return 1
        if settings.database.migrate_on_start:
            await migrate(engine, MIGRATIONS_DIR)
        if args.command == "set-role":
            roles = settings.scope_policy.roles
            if args.role not in roles:
                print(f"set-role: no role {args.role!r}; roles: {', '.join(roles)}", file=sys.stderr)
                return 2
            if not await AccountRepository(engine).set_role(args.username, args.role):
                print(f"set-role: no user named {args.username!r}", file=sys.stderr)
                return 1
            print(f"{args.username} is now {args.role}; it applies from their next login")
            return 0
        return await _create_client(
            ClientRepository(engine), args.client_id, args.scope, settings.scope_policy.issuable, may_introspect=args.introspect
        )
    finally:
        await engine.dispose()


def _missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names when it does not exist (None for PostgreSQL, whose
    missing database the driver reports itself)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).resolve()
    return None if path.exists() else path


async def _has_accounts_table(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: sa.inspect(sync).has_table("accounts"))


async def _create_client(
    repository: ClientRepository,
    client_id: str,
    scope: str | None,
    issuable: frozenset[str],
    *,
    may_introspect: bool,
) -> int:
    if not CLIENT_ID_PATTERN.fullmatch(client_id):
        print("create-client: the id must be 3-64 of [a-z0-9._-]", file=sys.stderr)
        return 2
    if client_id == FIRST_PARTY_CLIENT_ID:
        print(f"create-client: {client_id!r} is the first-party public client", file=sys.stderr)
        return 2
    if scope is None and not may_introspect:
        print("create-client: --scope is required (or --introspect)", file=sys.stderr)
        return 2
    try:
        scopes = parse_scope(scope) if scope is not None else frozenset[str]()
    except InvalidScopeError as error:
        print(f"create-client: {error}", file=sys.stderr)
        return 2
    if not scopes <= issuable:
        print(
            f"create-client: unknown scopes: {format_scope(scopes - issuable)}",
            file=sys.stderr,
        )
        return 2
    if await repository.client(client_id) is not None:
        print(f"create-client: {client_id!r} exists", file=sys.stderr)
        return 1
    secret = new_secret(CLIENT_SECRET_PREFIX)
    await repository.create_client(
        client_id,
        opaque_hash(secret),
        format_scope(scopes),
        utc_now(),
        may_introspect=may_introspect,
    )
    # The only time the secret is shown: only its hash is stored.
    created = {"client_id": client_id, "client_secret": secret, "scope": format_scope(scopes)}
    print(json.dumps({**created, "may_introspect": may_introspect}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
