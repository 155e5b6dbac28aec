"""Authorization attacks with genuine tokens: another user's order and profile by id
(IDOR), admin routes without `admin`, and scopes widened at refresh or login.

Each is a 4xx problem+json (RFC 6749 JSON on /auth/token, which is that RFC's endpoint),
and nothing changes: the victim's order stays placed, no token with more scope appears.
"""

from __future__ import annotations

import base64
import json
import uuid
from urllib.parse import urlencode

import pytest

from tests.support.hostile import (
    Client,
    Secrets,
    User,
    assert_no_leak,
    assert_refused,
    client_credentials,
    login,
    new_user,
)

pytestmark = pytest.mark.e2e

ORDER = {"items": [{"sku": "idor-1", "quantity": 2, "unit_price_cents": 500}], "note": "private"}


@pytest.fixture(scope="module")
def alices_order(gateway: Client, alice: User) -> dict:
    reply = gateway.post("/orders", json_body=ORDER, token=alice.access_token)
    assert reply.status == 201
    return reply.json()


def _scopes_of(token: str) -> set[str]:
    payload = token.split(".")[1]
    return set(json.loads(base64.urlsafe_b64decode(payload + "=="))["scope"].split())


# -- another user's resources -------------------------------------------------------------


def test_another_users_order_is_not_found(gateway: Client, bob: User, alices_order, secrets: Secrets) -> None:
    """404, worded exactly like an order that does not exist: existence is not disclosed."""
    theirs = assert_refused(gateway.get(f"/orders/{alices_order['id']}", token=bob.access_token), 404,
                            secrets=secrets)
    nobody = assert_refused(gateway.get(f"/orders/{uuid.uuid4()}", token=bob.access_token), 404)
    assert (theirs["type"], theirs["detail"]) == (nobody["type"], nobody["detail"])
    assert "private" not in json.dumps(theirs)


@pytest.mark.parametrize("spelling", ["lower", "upper"])
def test_another_users_order_cannot_be_cancelled(
    gateway: Client, alice: User, bob: User, alices_order, secrets: Secrets, spelling: str
) -> None:
    order_id = alices_order["id"] if spelling == "lower" else alices_order["id"].upper()
    reply = gateway.post(f"/orders/{order_id}/cancel", token=bob.access_token)
    assert_refused(reply, 404, secrets=secrets)
    mine = gateway.get(f"/orders/{alices_order['id']}", token=alice.access_token).json()
    assert mine["status"] == "placed"


def test_another_users_orders_cannot_be_listed(
    gateway: Client, alice: User, bob: User, alices_order, secrets: Secrets
) -> None:
    for query in (f"user_id={alice.id}", f"user_id={alice.id.upper()}", f"limit=5&user_id={alice.id}"):
        problem = assert_refused(gateway.get(f"/orders?{query}", token=bob.access_token), 403,
                                 secrets=secrets)
        assert problem["error"] == "insufficient_scope"
    # Bob's own listing never includes Alice's order.
    listing = gateway.get("/orders?limit=100", token=bob.access_token).json()
    assert alices_order["id"] not in {order["id"] for order in listing["items"]}


def test_another_users_profile_by_id_needs_admin(
    gateway: Client, alice: User, bob: User, secrets: Secrets
) -> None:
    for target in (alice.id, bob.id, alice.id.upper()):
        reply = gateway.get(f"/users/{target}", token=bob.access_token)
        problem = assert_refused(reply, 403, secrets=secrets)
        assert problem["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in reply.headers["WWW-Authenticate"]
        assert alice.username not in reply.body.decode()


def test_forged_identity_headers_do_not_change_who_you_are(
    gateway: Client, alice: User, bob: User, alices_order
) -> None:
    """Every spelling of X-User-* is stripped before the gateway adds its own."""
    forged = [
        ("X-User-Id", alice.id), ("x-user-id", alice.id), ("X_User_Id", alice.id),
        ("X-User-Scopes", "admin users:read orders:read"), ("X-USER-SCOPES", "admin"),
    ]
    me = gateway.get("/users/me", headers=forged, token=bob.access_token)
    assert me.status == 200 and me.json()["id"] == bob.id
    theirs = gateway.get(f"/orders/{alices_order['id']}", headers=forged, token=bob.access_token)
    assert_refused(theirs, 404)
    assert_refused(gateway.get(f"/users/{alice.id}", headers=forged, token=bob.access_token), 403)


# -- admin routes ------------------------------------------------------------------------------


def test_admin_routes_work_for_an_admin(gateway: Client, admin: User, alice: User, alices_order) -> None:
    """The control: the same requests succeed with the admin scope."""
    assert gateway.get(f"/users/{alice.id}", token=admin.access_token).json()["id"] == alice.id
    listing = gateway.get(f"/orders?user_id={alice.id}", token=admin.access_token).json()
    assert alices_order["id"] in {order["id"] for order in listing["items"]}


def test_an_admin_token_narrowed_without_admin_is_refused(
    gateway: Client, admin: User, alice: User, secrets: Secrets
) -> None:
    narrowed = login(gateway, secrets, admin.username, scope="users:read orders:read")
    assert "admin" not in _scopes_of(narrowed["access_token"])
    assert_refused(gateway.get(f"/users/{alice.id}", token=narrowed["access_token"]), 403)
    assert_refused(gateway.get(f"/orders?user_id={alice.id}", token=narrowed["access_token"]), 403)


def test_a_machine_client_without_the_scopes_is_refused(
    gateway: Client, machine_client: tuple[str, str], alice: User, secrets: Secrets
) -> None:
    """A client-credentials token (scope orders:read) cannot read profiles or place orders."""
    client_id, secret = machine_client
    reply = client_credentials(gateway, client_id, secret)
    assert reply.status == 200, reply.body
    token = reply.json()["access_token"]
    secrets.add(token)
    assert_refused(gateway.get("/users/me", token=token), 403, secrets=secrets)
    assert_refused(gateway.post("/orders", json_body=ORDER, token=token), 403, secrets=secrets)
    assert_refused(gateway.get(f"/users/{alice.id}", token=token), 403, secrets=secrets)


# -- scope widening ------------------------------------------------------------------------------


def test_login_cannot_ask_for_admin(gateway: Client, alice: User, secrets: Secrets) -> None:
    reply = gateway.post(
        "/auth/login", json_body={"username": alice.username, "password": alice.password, "scope": "admin"}
    )
    problem = assert_refused(reply, 400, secrets=secrets, sent=[alice.password])
    assert problem["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "requested",
    ["orders:read orders:write", "orders:read admin", "admin", "profiles:provision", "orders:read *"],
)
def test_refresh_cannot_widen_the_scope_of_its_login(
    gateway: Client, secrets: Secrets, requested: str
) -> None:
    """Logged in with orders:read only: a refresh may keep or narrow that, never add to it,
    not even scopes the user's role would allow. The refused refresh spends nothing."""
    user = new_user(gateway, secrets, scope="orders:read")
    assert _scopes_of(user.access_token) == {"orders:read"}
    reply = gateway.post("/auth/refresh", json_body={"refresh_token": user.refresh_token, "scope": requested})
    problem = assert_refused(reply, 400, secrets=secrets, sent=[user.refresh_token])
    assert problem["error"] == "invalid_scope"
    # The refresh token still works, for what the login granted and no more.
    again = gateway.post("/auth/refresh", json_body={"refresh_token": user.refresh_token})
    assert again.status == 200, again.body
    tokens = again.json()
    secrets.add(tokens["access_token"], tokens["refresh_token"])
    assert _scopes_of(tokens["access_token"]) == {"orders:read"}
    assert_refused(gateway.post("/orders", json_body=ORDER, token=tokens["access_token"]), 403)


@pytest.mark.parametrize("requested", ["orders:read orders:write", "admin"])
def test_the_oauth_token_endpoint_cannot_widen_a_refresh_either(
    gateway: Client, secrets: Secrets, requested: str
) -> None:
    """RFC 6749 section 6 through POST /auth/token: an invalid_scope error (that RFC's JSON)."""
    user = new_user(gateway, secrets, scope="orders:read")
    reply = gateway.post(
        "/auth/token",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=urlencode({"grant_type": "refresh_token", "refresh_token": user.refresh_token, "scope": requested}),
    )
    assert reply.status == 400 and reply.content_type == "application/json"
    assert reply.json()["error"] == "invalid_scope"
    assert "access_token" not in reply.json()
    assert_no_leak(reply, secrets=secrets, sent=[user.refresh_token])


def test_a_machine_client_cannot_widen_its_scope(
    gateway: Client, machine_client: tuple[str, str], secrets: Secrets
) -> None:
    client_id, secret = machine_client
    reply = client_credentials(gateway, client_id, secret, "&scope=orders:read+orders:write")
    assert reply.status == 400 and reply.json()["error"] == "invalid_scope"
    assert_no_leak(reply, secrets=secrets, sent=[secret])
