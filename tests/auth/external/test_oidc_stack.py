"""External sign-in through the whole system: the real provider, the gateway, auth, users
and the browser demo, as processes on loopback. Over HTTP first, then in Chromium (skipped
with the reason when Chromium or Playwright is missing, unless PASSGATE_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest

from devstack.stack import ROOT, PortPlan, Stack, StackConfig
from tests.support.oidc_flow import new_binding
from tests.support.oidc_node_provider import CLIENT_ID, CLIENT_SECRET, NodeProvider, unavailable
from tests.support.provider_pages import sign_in_at_provider
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "oidc"


@pytest.fixture(scope="module")
def provider_and_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeProvider, Stack]]:
    data_dir = tmp_path_factory.mktemp("oidc-stack")
    ports = PortPlan.free(frontends=3)
    gateway = f"http://127.0.0.1:{ports.gateway}"
    provider = NodeProvider(
        [f"{gateway}/auth/oidc/local/callback"], log_path=data_dir / "provider.log"
    ).start()
    secret = data_dir / "local-client-secret"
    secret.write_text(CLIENT_SECRET)
    providers = data_dir / "oidc-providers.yaml"
    providers.write_text(
        "providers:\n"
        f"  - {{id: local, name: Local IdP, issuer: '{provider.issuer}', client_id: {CLIENT_ID},\n"
        f"     client_secret_file: '{secret}'}}\n"
    )
    config = StackConfig(data_dir=data_dir, ports=ports, serve_frontend=True)
    # The return origins are the stack's own, known from its ports before anything starts.
    origins = Stack(config).allowed_origins
    config.env = {
        "auth": {
            "PASSGATE_OIDC_PROVIDERS": str(providers),
            "PASSGATE_OIDC_RETURN_ORIGINS": ",".join(origins),
            **CHEAP_ARGON2,
        }
    }
    try:
        with running_stack(config) as stack:
            yield provider, stack
    finally:
        provider.stop()


async def test_sign_in_through_the_gateway_gives_tokens_the_gateway_accepts(
    provider_and_stack,
) -> None:
    _, stack = provider_and_stack
    gateway, origin = stack.gateway_url, stack.allowed_origins[0]
    verifier, challenge = new_binding()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        listed = await (await browser.get(f"{gateway}/auth/oidc/providers")).json()
        assert listed == {"providers": [{"id": "local", "name": "Local IdP"}]}
        started = await browser.post(
            f"{gateway}/auth/oidc/local/start",
            json={"return_to": f"{origin}/", "binding_challenge": challenge},
        )
        assert started.status == 200, await started.text()
        url = (await started.json())["authorization_url"]
        redirect = await sign_in_at_provider(
            browser, url, "olga", f"{gateway}/auth/oidc/local/callback"
        )
        async with browser.get(redirect, allow_redirects=False) as back:
            assert back.status == 303
            location = back.headers["Location"]
        page, _, fragment = location.partition("#")
        assert page == f"{origin}/"
        handoff = dict(parse_qsl(fragment))["oidc_code"]
        exchanged = await browser.post(
            f"{gateway}/auth/oidc/exchange", json={"code": handoff, "binding_verifier": verifier}
        )
        assert exchanged.status == 200, await exchanged.text()
        tokens = await exchanged.json()
        me = await browser.get(
            f"{gateway}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status == 200
        assert (await me.json())["username"] == "olga"
        # A forged link request without a token is refused by the gateway itself.
        forged = await browser.post(
            f"{gateway}/auth/oidc/local/link",
            json={"return_to": f"{origin}/", "binding_challenge": challenge},
            headers={"X-User-Id": "00000000-0000-0000-0000-000000000000"},
        )
        assert forged.status == 401


def test_sign_in_with_the_provider_in_the_browser(provider_and_stack) -> None:
    """Click "Sign in with Local IdP", log in and consent at the provider, come back signed
    in; no token or code is left in the address bar, and no token ever was in a URL."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed: .venv/bin/pip install -e '.[test]'")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"{CHROMIUM} is missing: apt-get install -y chromium")
    _, stack = provider_and_stack
    origin = stack.allowed_origins[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    urls: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic"],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            expect.set_options(timeout=15_000)
            page.on("request", lambda request: urls.append(request.url))
            page.goto(f"{origin}/")
            page.wait_for_selector("body[data-ready=true]")
            page.click("button.external-signin[data-provider=local]")
            page.wait_for_selector("input[name=login]")
            page.fill("input[name=login]", "petra")
            page.fill("input[name=password]", "any password")
            page.click("button[type=submit]")
            page.wait_for_selector("button[type=submit]:has-text('Continue')")
            page.click("button[type=submit]")
            expect(page.locator("body")).to_have_attribute("data-session", "in")
            expect(page.locator("#profile-username")).to_have_text("petra")
            page.screenshot(path=str(ARTIFACTS / "signed-in-with-provider.png"), full_page=True)
            assert page.url == f"{origin}/", page.url  # the fragment is gone
            assert page.evaluate("() => sessionStorage.getItem('passgate.oidc_binding')") is None
        finally:
            browser.close()
    assert any("/auth/oidc/local/callback?" in url for url in urls)
    for url in urls:
        assert "access_token" not in url and "pgr_" not in url and "id_token" not in url, url
