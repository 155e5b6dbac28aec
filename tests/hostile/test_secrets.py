"""Secrets: after a full session (every credential flow, failures included) on a stack
that logs at DEBUG, no log file and no process's /metrics holds a password, an access
token, a refresh token or a client secret.

The session's own secrets are collected as they are made; whatever the other hostile
tests handled before this one (same stack, same `secrets` collector) is checked too.
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from urllib.parse import urlencode

import pytest

from devstack.stack import Stack
from tests.support.hostile import (
    Client,
    Secrets,
    client_credentials,
    login,
    new_user,
    read_text,
    register,
)

pytestmark = pytest.mark.e2e

# Shapes of secrets, whoever made them: a JWT, a refresh token, a client secret.
SECRET_SHAPES = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}"),
    "refresh token": re.compile(r"pgr_[A-Za-z0-9_-]{20,}"),
    "client secret": re.compile(r"pgs_[A-Za-z0-9_-]{20,}"),
}


def full_session(gateway: Client, secrets: Secrets, machine_client: tuple[str, str]) -> None:
    """Every way a secret travels through the system, the failing ones included."""
    user = new_user(gateway, secrets)
    auth = {"Authorization": f"Bearer {user.access_token}"}
    assert gateway.get("/users/me", headers=auth).status == 200
    assert gateway.post("/orders", headers=auth, json_body={
        "items": [{"sku": "secret-1", "quantity": 1, "unit_price_cents": 1}]}).status == 201
    # A token in the places it must not go: refused, and not logged from there either.
    assert gateway.get(f"/orders?access_token={user.access_token}").status == 401
    assert gateway.get("/orders", headers={"Cookie": f"token={user.access_token}"}).status == 401
    # Refresh, both ways; then replay a spent refresh token (reuse detection).
    rotated = gateway.post("/auth/refresh", json_body={"refresh_token": user.refresh_token}).json()
    secrets.add(rotated["access_token"], rotated["refresh_token"])
    assert gateway.post("/auth/refresh", json_body={"refresh_token": user.refresh_token}).status == 401
    again = login(gateway, secrets, user.username)
    form = urlencode({"grant_type": "refresh_token", "refresh_token": again["refresh_token"]})
    reply = gateway.post("/auth/token", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=form)
    assert reply.status == 200
    secrets.add(reply.json()["access_token"], reply.json()["refresh_token"])
    # Client credentials, right and wrong.
    client_id, client_secret = machine_client
    for secret in (client_secret, client_secret[:-4] + "XXXX"):
        secrets.add(secret)
        reply = client_credentials(gateway, client_id, secret)
        if reply.status == 200:
            secrets.add(reply.json()["access_token"])
    # Wrong passwords: at login (for a real and an unknown user) and at password change.
    wrong = f"wrong password {uuid.uuid4().hex}"
    secrets.add(wrong)
    for username in (user.username, f"nobody-{uuid.uuid4().hex[:8]}"):
        assert gateway.post("/auth/login", json_body={"username": username, "password": wrong}).status == 401
    assert gateway.post("/auth/password", headers=auth, json_body={
        "current_password": wrong, "new_password": "a brand new password 2"}).status == 401
    # A password typed into the username field, and a refused (too short) new password.
    typed = f"typed-into-username-{uuid.uuid4().hex}"
    secrets.add(typed)
    assert gateway.post("/auth/login", json_body={"username": typed, "password": wrong}).status == 401
    short = f"s{uuid.uuid4().hex[:6]}"
    secrets.add(short)
    assert gateway.post("/auth/register", json_body={"username": f"h-{uuid.uuid4().hex[:12]}",
                                                     "password": short}).status == 400
    # A successful password change, logout, logout everywhere.
    new_password = f"a brand new password {uuid.uuid4().hex}"
    secrets.add(new_password)
    assert gateway.post("/auth/password", headers=auth, json_body={
        "current_password": user.password, "new_password": new_password}).status == 204
    changed = login(gateway, secrets, user.username, password=new_password)
    assert gateway.post("/auth/logout", json_body={"refresh_token": changed["refresh_token"]}).status == 204
    assert gateway.post("/auth/logout-all", headers={
        "Authorization": f"Bearer {changed['access_token']}"}).status == 204
    register(gateway, secrets)


def metrics_pages(stack: Stack) -> dict[str, str]:
    """Each process's /metrics: the gateway's on its admin port, the services' on their own."""
    urls = {"gateway": f"http://{stack.config.host}:{stack.config.ports.gateway_admin}/metrics"}
    for name, process in stack.processes.items():
        if name.startswith("gateway"):
            continue
        admin = process.env.get("PASSGATE_ADMIN_PORT")
        port = admin or process.env["PASSGATE_PORT"]
        urls[name] = f"http://{stack.config.host}:{port}/metrics"
    pages = {}
    for name, url in urls.items():
        with urllib.request.urlopen(url, timeout=10) as response:
            pages[name] = response.read().decode()
    return pages


def test_no_secret_in_logs_or_metrics_after_a_full_session(
    stack: Stack, gateway: Client, secrets: Secrets, machine_client: tuple[str, str]
) -> None:
    full_session(gateway, secrets, machine_client)
    assert len(secrets.values) >= 15
    logs = sorted((stack.config.data_dir / "logs").glob("*.log"))
    assert {path.stem.rsplit("-", 1)[0] for path in logs} >= {"gateway", "auth", "users", "orders"}
    for path in logs:
        text = read_text([path])
        assert text, f"{path.name} is empty: the check would prove nothing"
        assert not secrets.found_in(text), f"{path.name} holds {secrets.found_in(text)}"
        for shape, pattern in SECRET_SHAPES.items():
            match = pattern.search(text)
            assert match is None, f"{path.name} holds a {shape}: {match.group()[:12]}..."
    for name, page in metrics_pages(stack).items():
        assert "http_server_requests_total" in page
        assert not secrets.found_in(page), f"{name} /metrics holds {secrets.found_in(page)}"
        for shape, pattern in SECRET_SHAPES.items():
            assert pattern.search(page) is None, f"{name} /metrics holds a {shape}"
