"""Settings from the environment, the operator commands, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from common.settings import SettingsError
from services.auth.__main__ import main
from services.auth.app import OPENAPI_PATH, create_app
from services.auth.keyring.signing_keys import read_key_set
from services.auth.settings import AuthSettings
from services.auth.tokens.clients import Client, ClientRepository
from services.auth.tokens.opaque import opaque_hash


def test_defaults() -> None:
    settings = AuthSettings.from_env({})
    assert settings.server.port == 8081
    assert settings.database.url == "sqlite:///.data/auth.db" and settings.database.pool_size == 5
    assert settings.issuer == "http://127.0.0.1:8080" and settings.audience == "passgate"
    assert settings.access_token_ttl == 600
    assert settings.signing_keys_dir == Path(".data/keys") and settings.generate_keys is False
    assert settings.users_url is None and settings.redis_url is None
    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    # The production Argon2 cost is OWASP's first choice for Argon2id: m=19 MiB, t=2, p=1.
    assert (
        settings.argon2.time_cost,
        settings.argon2.memory_cost,
        settings.argon2.parallelism,
    ) == (2, 19456, 1)


def test_overrides_and_validation() -> None:
    settings = AuthSettings.from_env(
        {
            "PASSGATE_ACCESS_TOKEN_TTL": "5",
            "PASSGATE_USERS_URL": "http://users:8082/",
            "PASSGATE_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
            "PASSGATE_ARGON2_MEMORY_COST": "8",
            "PASSGATE_ARGON2_PARALLELISM": "1",
        }
    )
    assert settings.access_token_ttl == 5 and settings.users_url == "http://users:8082"
    assert len(settings.trusted_proxies) == 2
    for env in (
        {"PASSGATE_ACCESS_TOKEN_TTL": "901"},
        {"PASSGATE_ACCESS_TOKEN_TTL": "4"},
        {"PASSGATE_TRUSTED_PROXIES": "not-a-network"},
        {"PASSGATE_KEY_PUBLISH_LEAD": "10", "PASSGATE_JWKS_MAX_AGE": "300"},
        {"PASSGATE_REFRESH_IDLE_TTL": "7200", "PASSGATE_REFRESH_ABSOLUTE_TTL": "3600"},
        {"PASSGATE_GENERATE_KEYS": "maybe"},
    ):
        with pytest.raises(SettingsError):
            AuthSettings.from_env(env)


@pytest.fixture
def cli_env(monkeypatch, tmp_path, key_template):
    import shutil

    shutil.copytree(key_template, tmp_path / "keys")
    env = {
        "PASSGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "PASSGATE_SIGNING_KEYS_DIR": str(tmp_path / "keys"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_cli_commands(cli_env, capsys, tmp_path) -> None:
    assert main(["migrate"]) == 0
    capsys.readouterr()

    assert main(["create-client", "reporting", "--scope", "orders:read users:read"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["client_id"] == "reporting" and printed["client_secret"].startswith("pgs_")
    assert main(["create-client", "reporting", "--scope", "orders:read"]) == 1
    assert main(["create-client", "other", "--scope", "profiles:provision"]) == 2
    assert main(["create-client", "other"]) == 2  # a scope, or --introspect
    assert main(["create-client", "passgate", "--introspect"]) == 2  # the public client
    assert main(["create-client", "other\n", "--introspect"]) == 2
    assert main(["create-client", "reports-api", "--introspect"]) == 0
    resource_server = json.loads(capsys.readouterr().out)
    assert resource_server["may_introspect"] is True and resource_server["scope"] == ""

    async def stored(client_id: str) -> Client:
        from common.db import create_engine

        engine = create_engine(cli_env["PASSGATE_DATABASE_URL"])
        try:
            client = await ClientRepository(engine).client(client_id)
        finally:
            await engine.dispose()
        assert client is not None
        return client

    # Only the hash is kept: the secret was shown once.
    reporting = asyncio.run(stored("reporting"))
    assert reporting.secret_hash == opaque_hash(printed["client_secret"])
    assert not reporting.may_introspect
    assert asyncio.run(stored("reports-api")).may_introspect

    assert main(["set-role", "nobody", "admin"]) == 1
    before = {key.kid for key in read_key_set(tmp_path / "keys")}
    assert main(["rotate-keys"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["kid"] not in before
    assert {key.kid for key in read_key_set(tmp_path / "keys")} == before | {rotated["kid"]}
    assert main(["rotate-keys", "--lead", "1"]) == 2  # shorter than the JWKS max-age


def test_openapi_documents_every_route_and_is_31() -> None:
    from services.auth.settings import AuthSettings as Settings

    document = yaml.safe_load(OPENAPI_PATH.read_text())
    assert document["openapi"].startswith("3.1")
    app = create_app(Settings.from_env({}))
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    common_routes = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}
    assert routes - common_routes == documented
    for name, schema in document["components"]["schemas"].items():
        if name.endswith("Request"):
            assert schema.get("additionalProperties") is False, name


@pytest.mark.parametrize(
    "command",
    [["set-role", "bob", "admin"], ["create-client", "reporting", "--scope", "orders:read"]],
)
def test_operator_commands_refuse_a_database_that_is_not_there(
    command, monkeypatch, tmp_path, capsys
) -> None:
    """Run from another directory, the default URL names no file: say so, create nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PASSGATE_DATABASE_URL", raising=False)
    assert main(command) == 1
    error = capsys.readouterr().err
    assert "no auth database at" in error and str(tmp_path / ".data" / "auth.db") in error
    assert not (tmp_path / ".data").exists()


def test_operator_commands_refuse_a_database_without_auth_tables(
    monkeypatch, tmp_path, capsys
) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").close()  # exists, but is not auth's
    monkeypatch.setenv("PASSGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert main(["set-role", "bob", "admin"]) == 1
    assert "has no auth tables" in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "other.db") as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []
