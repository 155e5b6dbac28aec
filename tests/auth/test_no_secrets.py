"""A whole session with log capture: no password, token or secret in logs, metrics or errors."""

from __future__ import annotations

import logging

from common.logging import JsonFormatter
from tests.support.auth_client import add_client, basic, decode, identity_headers, login, register
from tests.support.http import PASSWORD

NEW_PASSWORD = "another long passphrase"


async def test_a_whole_session_leaves_no_secret_in_logs_or_metrics(
    auth_client, users_service, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await auth_client(users_url=users_service.url)
    secrets: list[str] = [PASSWORD, NEW_PASSWORD]

    user_id = await register(client)
    first = await login(client)
    refreshed = await (
        await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status == 401
    second = await login(client)
    bad = await client.post(
        "/auth/login", json={"username": "alice", "password": "wrong " + PASSWORD}
    )
    assert bad.status == 401
    short = await client.post("/auth/register", json={"username": "bob", "password": "hunter2"})
    assert short.status == 400
    secrets.append("hunter2")
    changed = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=identity_headers(user_id),
    )
    assert changed.status == 204
    third = await login(client, password=NEW_PASSWORD)
    assert (
        await client.post("/auth/logout", json={"refresh_token": third["refresh_token"]})
    ).status == 204
    client_secret = await add_client(client, "reporting", "orders:read")
    machine = await (
        await client.post(
            "/auth/token",
            data={"grant_type": "client_credentials"},
            headers=basic("reporting", client_secret),
        )
    ).json()
    wrong_secret = await client.post(
        "/auth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("reporting", client_secret + "x"),
    )
    assert wrong_secret.status == 401
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    decode(machine["access_token"], jwks)

    for pair in (first, refreshed, second, third):
        secrets += [pair["access_token"], pair["refresh_token"]]
    secrets += [machine["access_token"], client_secret]
    # The JWS signature part alone is as secret as the token.
    secrets += [token.rsplit(".", 1)[1] for token in secrets if token.count(".") == 2]

    formatter = JsonFormatter("auth")
    logs = "\n".join(formatter.format(record) for record in caplog.records)
    metrics = await (await client.get("/metrics")).text()
    provisioning = str(users_service.calls)
    assert caplog.records, "the session should have logged something"
    for secret in secrets:
        assert secret not in logs
        assert secret not in metrics
        assert secret not in provisioning
    for response_text in (
        await reused.text(),
        await bad.text(),
        await short.text(),
        await wrong_secret.text(),
    ):
        for secret in secrets:
            assert secret not in response_text
    # And the metrics do record the session.
    assert 'auth_logins_total{result="success"} 3.0' in metrics
    assert 'auth_registrations_total{result="success"} 1.0' in metrics
    assert 'auth_password_hash_duration_seconds_count{operation="verify"}' in metrics
