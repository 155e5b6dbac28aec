"""Real-browser tests: one Passgate stack serving the demo on three origins, driven by Chromium.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright for Python; no browser is ever
downloaded. Without either, the tests skip with the reason, unless PASSGATE_REQUIRE_SERVICES=1
(CI), where they fail.

The stack runs with 5-second access tokens and no verification leeway at the gateway, so a
token's expiry happens within a test and the page's silent refresh is observable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devstack.stack import ROOT, PortPlan, Stack, StackConfig
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

    from tests.support.browser_pages import DemoPage

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
ACCESS_TOKEN_TTL = 5  # seconds: auth's minimum, so expiry happens inside a test
REQUIRE = os.environ.get("PASSGATE_REQUIRE_SERVICES") == "1"
# Console messages that mean the page broke its own security policy (inline code, markup sinks).
POLICY_VIOLATION = re.compile(r"Content Security Policy|Trusted Type", re.IGNORECASE)


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (required: PASSGATE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed: .venv/bin/pip install -e '.[test]'")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} is missing: apt-get install -y chromium")
    manager = sync_playwright().start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system plus the demo on three origins (two allowed by CORS, one not).
    Depends on `browser` so that a missing browser skips before anything starts."""
    config = StackConfig(
        data_dir=tmp_path_factory.mktemp("browser-stack"),
        ports=PortPlan.free(frontends=3),
        serve_frontend=True,
        env={
            "auth": {
                "PASSGATE_ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
                **CHEAP_ARGON2,
            },
            # Expired means expired: no clock-skew allowance, so the first token's expiry is
            # observable within seconds.
            "gateway": {"PASSGATE_TOKEN_LEEWAY": "0"},
        },
    )
    with running_stack(config) as stack:
        yield stack


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def open_demo(
    browser: Browser, stack: Stack, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str, str], DemoPage]]:
    """open_demo(origin, name): a fresh browser context (its own storage) with the demo
    loaded from `origin`. At the end each page is screenshotted to test-artifacts/browser/
    (also when the test failed), and any security-policy violation or uncaught page error
    fails the test."""
    from playwright.sync_api import expect

    from tests.support.browser_pages import DemoPage

    expect.set_options(timeout=10_000)
    opened: list[tuple[str, DemoPage]] = []
    problems: list[str] = []

    def open_page(origin: str, name: str, *, before_load: Callable[[DemoPage], None] | None = None) -> DemoPage:
        context = browser.new_context(viewport={"width": 1280, "height": 960})
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"{name}: uncaught {error}"))
        page.on(
            "console",
            lambda message: problems.append(f"{name}: {message.text}")
            if message.type == "error" and POLICY_VIOLATION.search(message.text)
            else None,
        )
        demo = DemoPage(page, origin, stack.gateway_url)
        opened.append((name, demo))
        if before_load:
            before_load(demo)
        page.goto(origin + "/")
        page.wait_for_selector("body[data-ready=true]")
        return demo

    yield open_page

    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    for name, demo in opened:
        try:
            demo.page.screenshot(path=str(artifacts / f"{test_name}--{name}.png"), full_page=True)
        finally:
            demo.page.context.close()
    assert not problems, "the page broke its security policy or threw:\n" + "\n".join(problems)
