"""A second real issuer: a partner's OpenID Connect provider (panva/oidc-provider) issues RFC
9068 access tokens to a machine client by the client credentials grant; the real gateway,
in front of the real services, accepts them on a route that trusts the partner and refuses
them on one that does not, and tells the backend which issuer vouched."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.http import new_account
from tests.support.metrics import sample_sum, scrape
from tests.support.oidc_node_provider import NodeProvider
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes

AUDIENCE = "https://api.passgate.test"
ROBOT = {"client_id": "partner-robot", "client_secret": "partner-robot-secret-loopback-only",
         "scope": "orders:read"}


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    log = tmp_path_factory.mktemp("partner-idp") / "provider.log"
    provider = NodeProvider(
        [], log_path=log, machine_clients=[ROBOT],
        resource={"audience": AUDIENCE, "scope": "orders:read orders:write"},
    ).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, partner: NodeProvider) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("partner-stack")
    routes = generous_routes(data_dir / "routes.yaml", **{"orders-list": {"issuers": ["passgate", "partner"]}})
    text = routes.read_text()
    routes.write_text(
        text
        + "issuers:\n"
        + "  partner:\n"
        + f"    issuer: {partner.issuer}\n"
        + f"    jwks_url: {partner.issuer}/jwks\n"
        + f"    audience: {AUDIENCE}\n"
        + "    algorithms: [RS256]\n"
    )
    config = StackConfig(
        data_dir=data_dir,
        ports=PortPlan.free(),
        env={"auth": dict(CHEAP_ARGON2), "gateway": {"PASSGATE_ROUTES_FILE": str(routes)}},
    )
    with running_stack(config) as running:
        yield running


async def machine_token(session: aiohttp.ClientSession, partner: NodeProvider) -> str:
    basic = base64.b64encode(f"{ROBOT['client_id']}:{ROBOT['client_secret']}".encode()).decode()
    async with session.post(
        f"{partner.issuer}/token",
        data={"grant_type": "client_credentials", "scope": "orders:read"},
        headers={"Authorization": f"Basic {basic}"},
    ) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["access_token"]


def test_a_partner_machine_token_is_accepted_only_where_the_partner_is_trusted(
    stack: Stack, partner: NodeProvider
) -> None:
    asyncio.run(_partner_flow(stack, partner))


async def _partner_flow(stack: Stack, partner: NodeProvider) -> None:
    base = stack.gateway_url
    async with aiohttp.ClientSession() as session:
        token = await machine_token(session, partner)
        machine = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{base}/orders", headers=machine) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["items"] == []  # the machine client has no orders
        async with session.get(f"{base}/users/me", headers=machine) as response:
            assert response.status == 401
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        # Passgate's own users are unaffected on the shared route.
        account = await new_account(session, base)
        async with session.get(f"{base}/orders", headers=account.headers) as response:
            assert response.status == 200
        admin = stack.process("gateway-1").env["PASSGATE_ADMIN_PORT"]
        samples = await scrape(session, f"http://{stack.config.host}:{admin}/metrics")
        assert sample_sum(samples, "gateway_issuer_jwks_refreshes_total",
                          issuer="partner", result="success") >= 1
        assert sample_sum(samples, "gateway_issuer_jwks_keys", issuer="partner") >= 1
