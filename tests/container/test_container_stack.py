"""The image runs the system: auth, users, orders and the gateway, each a container of the one
image started as the dev overlay's Deployment says (uid 10001, read-only root filesystem with
/tmp a tmpfs, no capabilities, no privilege escalation, the manifests' environment), on one
podman network where they find each other by Service name. Through the containerised gateway:
the five-step flow, a signing-key rotation, and a restart that loses nothing.

Needs podman as root (skipped with the reason elsewhere; `.ci/run` installs it and requires
this test). The image is built into a private store each run: see deploy/README.md."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import aiohttp
import jwt
import pytest

from tests.support.servers import REQUIRE_SERVICES
from tests.container.podman import unavailable_reason
from tests.container.stack import FIGURES, IMAGE, POD_UID, ContainerStack, container_stack
from tests.support.http import PASSWORD, assert_problem, bearer, register_and_login

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
ROTATION_WAIT = 90  # auth rereads its keys every 10 s; the gateway refetches on an unknown kid
RECOVERY_WAIT = 30  # the gateway ejects an unreachable upstream for 10 s


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerStack]:
    reason = unavailable_reason()
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(reason + " (required: PASSGATE_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    with container_stack(tmp_path_factory.mktemp("container")) as running:
        size = int(running.podman.run("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
        began = time.monotonic()
        yield running
        # The figures deploy/README.md quotes, in every run's summary.
        request.config.stash[FIGURES].append(
            f"container test: image built in {running.build_seconds:.0f} s ({size / 1e6:.0f} MB), "
            f"four containers ready in {running.start_seconds:.0f} s, "
            f"tests ran {time.monotonic() - began:.0f} s")


def _exec(stack: ContainerStack, name: str, *argv: str) -> tuple[int, str]:
    result = stack.podman.run("exec", name, *argv, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["gateway", "auth", "users", "orders"])
def test_runs_with_the_pod_security_settings(stack: ContainerStack, name: str) -> None:
    """Inside each running container: uid/gid 10001, an empty capability bounding set, no
    privilege escalation, the root filesystem mounted read-only (the venv cannot be written)
    and /tmp a writable tmpfs."""
    code, out = _exec(stack, name, "python3", "-c", (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "print(int(status['CapBnd'], 16), int(status['CapEff'], 16), status['NoNewPrivs'].strip())\n"
        "mounts = {l.split()[1]: l.split() for l in open('/proc/self/mounts')}\n"
        "print(mounts['/'][3].split(',')[0], mounts['/tmp'][2], mounts['/tmp'][3].split(',')[0])\n"
        "try:\n"
        "    open('/opt/passgate/probe', 'w')\n"
        "    print('venv writable')\n"
        "except OSError:\n"
        "    print('venv refused')\n"
        "open('/tmp/probe', 'w').write('ok')\n"
        "print('tmp', open('/tmp/probe').read())\n"
    ))
    assert code == 0, out
    assert out.splitlines() == [
        f"{POD_UID} {POD_UID}",
        "0 0 1",  # no capability can ever be gained; NoNewPrivs set
        "ro tmpfs rw",
        "venv refused",
        "tmp ok",
    ]


async def test_five_step_flow_through_the_containerised_gateway(stack: ContainerStack) -> None:
    """Register, log in, send the token to users and orders, refresh: all through the gateway's
    container, which verifies the token against auth's JWKS (fetched by Service name)."""
    gateway = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        user_id, tokens = await register_and_login(session, gateway)
        async with session.get(f"{gateway}/users/me", headers=bearer(tokens["access_token"])) as response:
            assert response.status == 200, await response.text()
            profile = await response.json()
        # The profile exists because auth provisioned it in the users container at registration.
        assert profile["id"] == user_id and profile["display_name"] == "End To End"

        order = {"items": [{"sku": "tea", "quantity": 2, "unit_price_cents": 350}]}
        async with session.post(f"{gateway}/orders", json=order,
                                headers=bearer(tokens["access_token"])) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
        assert created["user_id"] == user_id and created["total_cents"] == 700
        async with session.get(f"{gateway}/orders", headers=bearer(tokens["access_token"])) as response:
            assert response.status == 200
            assert [o["id"] for o in (await response.json())["items"]] == [created["id"]]

        async with session.post(f"{gateway}/auth/refresh",
                                json={"refresh_token": tokens["refresh_token"]}) as response:
            assert response.status == 200, await response.text()
            renewed = await response.json()
        assert renewed["refresh_token"] != tokens["refresh_token"]
        async with session.get(f"{gateway}/users/me", headers=bearer(renewed["access_token"])) as response:
            assert response.status == 200
        # The spent refresh token is refused (and its family revoked).
        async with session.post(f"{gateway}/auth/refresh",
                                json={"refresh_token": tokens["refresh_token"]}) as response:
            await assert_problem(response, 401)

        async with session.get(f"{gateway}/orders") as response:
            await assert_problem(response, 401)
        async with session.get(f"{gateway}/metrics") as response:
            assert response.status == 404  # metrics only on the admin port


async def _login(session: aiohttp.ClientSession, gateway: str, username: str) -> dict:
    async with session.post(f"{gateway}/auth/login",
                            json={"username": username, "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _username(session: aiohttp.ClientSession, gateway: str, token: str) -> str:
    async with session.get(f"{gateway}/users/me", headers=bearer(token)) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["username"])


async def test_key_rotation_reaches_running_containers(stack: ContainerStack) -> None:
    """A key added to the mounted signing-keys directory (as a rotated Secret arrives) is
    published, then signs, with no restart; tokens of the old key keep working."""
    gateway = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        _, first = await register_and_login(session, gateway)
        username = await _username(session, gateway, first["access_token"])
        old_kid = jwt.get_unverified_header(first["access_token"])["kid"]
        # Lead 3 s instead of the default 600 (which must cover the JWKS max-age).
        new_kid = stack.auth_command("rotate-keys", "--lead", "3", PASSGATE_JWKS_MAX_AGE="1")["kid"]
        assert new_kid != old_kid

        accepted = None
        deadline = time.monotonic() + ROTATION_WAIT
        while accepted is None and time.monotonic() < deadline:
            tokens = await _login(session, gateway, username)
            if jwt.get_unverified_header(tokens["access_token"])["kid"] == new_kid:
                async with session.get(f"{gateway}/users/me",
                                       headers=bearer(tokens["access_token"])) as response:
                    if response.status == 200:
                        accepted = tokens
            await asyncio.sleep(1)
        assert accepted is not None, f"no token signed by {new_kid} was accepted:\n" + (
            stack.podman.logs("auth"))
        async with session.get(f"{gateway}/.well-known/jwks.json") as response:
            published = {key["kid"] for key in (await response.json())["keys"]}
        assert {old_kid, new_kid} <= published
        async with session.get(f"{gateway}/orders", headers=bearer(first["access_token"])) as response:
            assert response.status == 200, await response.text()


async def test_restarting_auth_loses_nothing(stack: ContainerStack) -> None:
    """auth's container stopped (SIGTERM, drain, exit) and started again: the account, the
    refresh token and the orders survive, and tokens issued before still verify."""
    gateway = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        user_id, tokens = await register_and_login(session, gateway)
        order = {"items": [{"sku": f"sku-{uuid.uuid4().hex[:6]}", "quantity": 1, "unit_price_cents": 5}]}
        async with session.post(f"{gateway}/orders", json=order,
                                headers=bearer(tokens["access_token"])) as response:
            assert response.status == 201
            order_id = (await response.json())["id"]

        before = stack.podman.inspect("auth")["State"]["StartedAt"]
        stack.podman.run("restart", "--time", "30", "auth", timeout=90)
        assert stack.podman.inspect("auth")["State"]["StartedAt"] != before
        await stack.wait_ready("auth")

        # The gateway may still hold auth as ejected for a moment after its connections broke:
        # it says so with 503 and Retry-After, and a client that waits that long gets through.
        deadline = time.monotonic() + RECOVERY_WAIT
        while True:
            async with session.post(f"{gateway}/auth/refresh",
                                    json={"refresh_token": tokens["refresh_token"]}) as response:
                if response.status != 503 or time.monotonic() > deadline:
                    assert response.status == 200, await response.text()
                    renewed = await response.json()
                    break
                await asyncio.sleep(float(response.headers["Retry-After"]))
        for token in (tokens["access_token"], renewed["access_token"]):
            async with session.get(f"{gateway}/orders/{order_id}", headers=bearer(token)) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["user_id"] == user_id
        username = await _username(session, gateway, renewed["access_token"])
        await _login(session, gateway, username)
