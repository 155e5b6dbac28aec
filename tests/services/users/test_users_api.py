"""The users service over HTTP: the real app, identity headers as the gateway sets them."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support.http import assert_problem

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def metric(client, name: str) -> float:
    return client.registry.get_sample_value(name) or 0.0


async def test_me_returns_the_provisioned_profile(users_client, provision, headers) -> None:
    user_id = await provision("alice")
    response = await users_client.get("/users/me", headers=headers.user(user_id))
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"id", "username", "display_name", "created_at"}
    assert body["id"] == user_id and body["username"] == "alice"
    assert body["display_name"] == "alice"  # defaults to the username
    assert RFC3339_UTC.match(body["created_at"])


async def test_me_without_identity_is_401_with_bearer_challenge(users_client) -> None:
    response = await users_client.get("/users/me")
    await assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_me_without_scope_is_403(users_client, provision, headers) -> None:
    user_id = await provision("bob")
    response = await users_client.get(
        "/users/me", headers=headers.user(user_id, frozenset({"orders:read"}))
    )
    body = await assert_problem(response, 403)
    assert body["required_scope"] == "users:read"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_me_without_profile_is_404(users_client, headers) -> None:
    response = await users_client.get("/users/me", headers=headers.user(str(uuid.uuid4())))
    await assert_problem(response, 404)


async def test_patch_changes_and_null_resets_the_display_name(
    users_client, provision, headers
) -> None:
    user_id = await provision("carol", "Carol")
    me = headers.user(user_id)
    response = await users_client.patch(
        "/users/me", json={"display_name": "Carol C. ✨"}, headers=me
    )
    assert response.status == 200
    assert (await response.json())["display_name"] == "Carol C. ✨"
    assert (await (await users_client.get("/users/me", headers=me)).json())[
        "display_name"
    ] == "Carol C. ✨"

    response = await users_client.patch("/users/me", json={"display_name": None}, headers=me)
    assert response.status == 200
    assert (await response.json())["display_name"] == "carol"
    assert metric(users_client, "users_profiles_updated_total") == 2


async def test_patch_needs_users_write(users_client, provision, headers) -> None:
    user_id = await provision("dave")
    response = await users_client.patch(
        "/users/me",
        json={"display_name": "x"},
        headers=headers.user(user_id, frozenset({"users:read"})),
    )
    await assert_problem(response, 403)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{", id="malformed-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b"{}", id="missing-field"),
        pytest.param(b'{"display_name": 42}', id="wrong-type"),
        pytest.param(b'{"display_name": "ok", "admin": true}', id="unknown-field"),
        pytest.param(b'{"display_name": ""}', id="empty"),
        pytest.param(b'{"display_name": "   "}', id="blank"),
        pytest.param(('{"display_name": "%s"}' % ("x" * 101)).encode(), id="too-long"),
        pytest.param(b'{"display_name": "a\\u0007b"}', id="control-character"),
        pytest.param(b'{"display_name": "a\\nb"}', id="newline"),
        pytest.param(b'{"display_name": "a\\u0000b"}', id="nul"),
        pytest.param(b'{"display_name": "a\\u0085b"}', id="c1-control"),
        pytest.param(b'{"display_name": "\\ud800"}', id="lone-surrogate"),
        pytest.param(b'{"display_name": NaN}', id="nan"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
async def test_patch_rejects_invalid_bodies(users_client, provision, headers, body) -> None:
    user_id = await provision("erin")
    response = await users_client.patch(
        "/users/me",
        data=body,
        headers={**headers.user(user_id), "Content-Type": "application/json"},
    )
    await assert_problem(response, 400)
    assert metric(users_client, "users_profiles_updated_total") == 0


async def test_patch_with_another_media_type_is_415(users_client, provision, headers) -> None:
    user_id = await provision("frank")
    response = await users_client.patch(
        "/users/me",
        data="display_name=x",
        headers={**headers.user(user_id), "Content-Type": "text/plain"},
    )
    await assert_problem(response, 415)


async def test_patch_with_a_huge_body_is_413(users_client, provision, headers) -> None:
    user_id = await provision("grace")
    body = b'{"display_name": "' + b"x" * 200_000 + b'"}'
    response = await users_client.patch(
        "/users/me",
        data=body,
        headers={**headers.user(user_id), "Content-Type": "application/json"},
    )
    await assert_problem(response, 413)


async def test_admin_reads_any_profile(users_client, provision, headers) -> None:
    user_id = await provision("heidi")
    admin = headers.admin(str(uuid.uuid4()))
    response = await users_client.get(f"/users/{user_id}", headers=admin)
    assert response.status == 200
    assert (await response.json())["username"] == "heidi"
    # An upper-case spelling of the same UUID names the same profile.
    response = await users_client.get(f"/users/{user_id.upper()}", headers=admin)
    assert response.status == 200


async def test_profile_by_id_needs_admin(users_client, provision, headers) -> None:
    user_id = await provision("ivan")
    response = await users_client.get(f"/users/{user_id}", headers=headers.user(user_id))
    body = await assert_problem(response, 403)
    assert body["required_scope"] == "admin"


async def test_profile_by_id_unknown_is_404_and_malformed_is_400(users_client, headers) -> None:
    admin = headers.admin(str(uuid.uuid4()))
    await assert_problem(await users_client.get(f"/users/{uuid.uuid4()}", headers=admin), 404)
    for bad in ("not-a-uuid", "1234", "x" * 300, "%00", "00000000-0000-0000-0000-00000000000g"):
        await assert_problem(await users_client.get(f"/users/{bad}", headers=admin), 400)


async def test_provisioning_is_idempotent(users_client, headers) -> None:
    user_id = str(uuid.uuid4())
    url = f"/internal/profiles/{user_id}"
    auth = headers.provisioner(user_id)
    first = await users_client.put(
        url, json={"username": "judy", "display_name": "Judy"}, headers=auth
    )
    assert first.status == 201
    profile = await first.json()
    assert profile["display_name"] == "Judy"

    again = await users_client.put(
        url, json={"username": "judy", "display_name": "Other"}, headers=auth
    )
    assert again.status == 200
    assert await again.json() == profile  # the stored profile, unchanged

    other_name = await users_client.put(url, json={"username": "mallory"}, headers=auth)
    await assert_problem(other_name, 409)

    other_id = str(uuid.uuid4())
    taken = await users_client.put(
        f"/internal/profiles/{other_id}",
        json={"username": "judy"},
        headers=headers.provisioner(other_id),
    )
    await assert_problem(taken, 409)
    assert metric(users_client, "users_profiles_created_total") == 1


@pytest.mark.parametrize("case", ["user-token", "other-client", "other-subject", "no-identity"])
async def test_provisioning_is_only_for_the_auth_service(users_client, headers, case) -> None:
    user_id = str(uuid.uuid4())
    sent = {
        "user-token": headers.user(user_id),
        "other-client": headers.provisioner(user_id, client_id="passgate-web"),
        "other-subject": headers.provisioner(str(uuid.uuid4())),
        "no-identity": {},
    }[case]
    response = await users_client.put(
        f"/internal/profiles/{user_id}", json={"username": "oscar"}, headers=sent
    )
    await assert_problem(response, 401 if case == "no-identity" else 403)
    admin = headers.admin(str(uuid.uuid4()))
    assert (await users_client.get(f"/users/{user_id}", headers=admin)).status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"username": "Upper"},
        {"username": "ab"},
        {"username": "x" * 65},
        {"username": "bad name"},
        {"username": 7},
        {"username": "peggy", "password": "hunter2hunter2"},
        {"username": "peggy", "display_name": "\u001b[31m"},
        {},
    ],
)
async def test_provisioning_validates_the_body(users_client, headers, body) -> None:
    user_id = str(uuid.uuid4())
    response = await users_client.put(
        f"/internal/profiles/{user_id}", json=body, headers=headers.provisioner(user_id)
    )
    await assert_problem(response, 400)


async def test_service_metrics_are_exposed(users_client, provision) -> None:
    await provision("trent")
    text = await (await users_client.get("/metrics")).text()
    assert "users_profiles_created_total 1.0" in text
    assert "users_profiles_updated_total 0.0" in text
