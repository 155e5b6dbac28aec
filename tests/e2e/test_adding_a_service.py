"""The README's "Adding a service" walkthrough, followed as written: its service file, its
scopes and its routes, taken from the README, run as real processes beside the system."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from devstack.processes import ManagedProcess, free_port
from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.http import PASSWORD, assert_problem, bearer, login, register
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Adding a service"
FENCE = re.compile(r"^```(\w+) (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def walkthrough_files() -> dict[str, str]:
    """What the section tells a reader to write, by the path its code fence names."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return {path: body for _, path, body in FENCE.findall(section)}


def with_scopes(addition: dict[str, Any]) -> dict[str, Any]:
    """The packaged scopes file with the walkthrough's lines added; `...` in a role's list
    stands for the scopes that role has already."""
    policy = yaml.safe_load((ROOT / "common" / "scopes.yaml").read_text())
    policy["scopes"].update(addition["scopes"])
    for role, listed in addition["roles"].items():
        kept = policy["roles"][role]
        policy["roles"][role] = [s for item in listed for s in (kept if item == "..." else [item])]
    return policy


def with_routes(base: Path, addition: dict[str, Any]) -> dict[str, Any]:
    routes = yaml.safe_load(base.read_text())
    routes["upstreams"].update(addition["upstreams"])
    routes["routes"].extend(addition["routes"])
    return routes


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def lint(routes: Path, scopes: Path | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **({"PASSGATE_SCOPES_FILE": str(scopes)} if scopes else {})}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "lint", str(routes)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False,
    )


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    data_dir = tmp_path_factory.mktemp("third-service")
    files = walkthrough_files()
    service = data_dir / "services" / "catalog" / "__main__.py"
    service.parent.mkdir(parents=True)
    service.write_text(files["services/catalog/__main__.py"])
    scopes = write_yaml(data_dir / "scopes.yaml", with_scopes(yaml.safe_load(files["common/scopes.yaml"])))
    routes_addition = yaml.safe_load(files["gateway/routes.yaml"])
    routes = write_yaml(
        data_dir / "routes.yaml", with_routes(generous_routes(data_dir / "packaged-routes.yaml"), routes_addition)
    )
    # Step 3's promise: the route needs step 2, and lint says so without it.
    refused = lint(routes, scopes=None)
    assert refused.returncode == 1 and "catalog:read" in refused.stdout, refused.stdout
    linted = lint(routes, scopes)
    assert linted.returncode == 0, linted.stdout + linted.stderr

    port = free_port()
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(),
        env={
            "auth": {**CHEAP_ARGON2, "PASSGATE_SCOPES_FILE": str(scopes)},
            "gateway": {
                "PASSGATE_SCOPES_FILE": str(scopes),
                "PASSGATE_ROUTES_FILE": str(routes),
                "PASSGATE_UPSTREAM_CATALOG": f"http://127.0.0.1:{port}",
            },
        },
    )
    with running_stack(config) as stack:
        catalog = ManagedProcess(
            "catalog",
            [str(service)],
            {
                "PASSGATE_PORT": str(port),
                "PASSGATE_ASSERTION_TRUST_DIR": str(data_dir / "assertion-trust"),
            },
            f"http://127.0.0.1:{port}/readyz",
            data_dir / "logs" / "catalog.log",
            ROOT,
            ports=(port,),
        )
        catalog.start()
        try:
            catalog.wait_ready(60)
            yield stack, f"http://127.0.0.1:{port}"
        finally:
            assert catalog.stop() == 0, (data_dir / "logs" / "catalog.log").read_text()


async def test_a_new_login_reaches_the_new_service_through_the_gateway(system) -> None:
    stack, _ = system
    async with aiohttp.ClientSession() as session:
        user_id, username = await register(session, stack.gateway_url)
        tokens = await login(session, stack.gateway_url, username)
        assert "catalog:read" in tokens["scope"].split()
        async with session.get(
            f"{stack.gateway_url}/catalog/products", headers=bearer(tokens["access_token"])
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        assert body["for"] == user_id and body["products"]
        async with session.get(f"{stack.gateway_url}/catalog/products") as response:
            await assert_problem(response, 401)


async def test_a_token_without_the_scope_is_refused_at_the_gateway(system) -> None:
    stack, _ = system
    async with aiohttp.ClientSession() as session:
        _, username = await register(session, stack.gateway_url)
        async with session.post(
            f"{stack.gateway_url}/auth/login",
            json={"username": username, "password": PASSWORD, "scope": "orders:read"},
        ) as response:
            assert response.status == 200, await response.text()
            narrowed = await response.json()
        async with session.get(
            f"{stack.gateway_url}/catalog/products", headers=bearer(narrowed["access_token"])
        ) as response:
            problem = await assert_problem(response, 403)
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        assert problem["error"] == "insufficient_scope"
        assert problem["required_scope"] == "catalog:read"


async def test_the_new_service_trusts_nobody_but_the_gateway(system) -> None:
    stack, direct = system
    async with aiohttp.ClientSession() as session:
        user_id, _ = await register(session, stack.gateway_url)
        forged = {"X-User-Id": user_id, "X-User-Scopes": "catalog:read"}
        async with session.get(f"{direct}/catalog/products", headers=forged) as response:
            await assert_problem(response, 401)
