"""The demo page as the tests see it: what a person does (fill, click, read), by element id.

Playwright's `expect` waits (up to its timeout) for what a person would wait for, so no test
sleeps to let the page catch up.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from playwright.sync_api import Page, Request, expect

from tests.support.http import PASSWORD


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the gateway verifies; the tests only read `exp`)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class DemoPage:
    """One tab of the demo, on one origin, in its own browser context."""

    def __init__(self, page: Page, origin: str, gateway: str) -> None:
        self.page = page
        self.origin = origin
        self.gateway = gateway
        # Bearer tokens the page sent to the gateway, in order: the tests read the token from
        # the wire, as the gateway sees it, not from the page's memory.
        self.bearer_tokens: list[str] = []
        page.on("request", self._record_token)

    def _record_token(self, request: Request) -> None:
        if not request.url.startswith(self.gateway):
            return
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
            if not self.bearer_tokens or self.bearer_tokens[-1] != token:
                self.bearer_tokens.append(token)

    # -- reading -------------------------------------------------------------------------

    def text(self, element_id: str) -> str:
        return self.page.locator(f"#{element_id}").inner_text()

    @property
    def notice(self):
        return self.page.locator("#notice")

    def expect_notice(self, status: str, pattern: str | re.Pattern[str] = "") -> None:
        """An error notice with data-status (an HTTP status, or "network") and text."""
        expect(self.notice).to_be_visible()
        expect(self.notice).to_have_attribute("data-status", status)
        if pattern:
            expect(self.notice).to_contain_text(pattern if isinstance(pattern, re.Pattern) else pattern)

    def expect_ok(self, pattern: str | re.Pattern[str]) -> None:
        expect(self.notice).to_have_attribute("data-kind", "ok")
        expect(self.notice).to_contain_text(pattern)

    def expect_signed_in(self, username: str) -> None:
        expect(self.page.locator("body")).to_have_attribute("data-session", "in")
        expect(self.page.locator("#profile-username")).to_have_text(username)

    def expect_signed_out(self) -> None:
        expect(self.page.locator("body")).to_have_attribute("data-session", "out")
        expect(self.page.locator("#login-form")).to_be_visible()

    def order_rows(self):
        return self.page.locator("#orders-body tr.order")

    def refresh_token_in_storage(self) -> str | None:
        return self.page.evaluate("() => sessionStorage.getItem('passgate.refresh_token')")

    # -- doing ---------------------------------------------------------------------------

    def register(self, username: str, display_name: str, password: str = PASSWORD) -> None:
        self.page.fill("#register-username", username)
        self.page.fill("#register-display-name", display_name)
        self.page.fill("#register-password", password)
        self.page.click("#register-submit")

    def login(self, username: str, password: str = PASSWORD, scopes: list[str] | None = None) -> None:
        self.page.fill("#login-username", username)
        self.page.fill("#login-password", password)
        if scopes is not None:
            for box in self.page.locator("#login-form input[name=scope]").all():
                box.set_checked(box.get_attribute("value") in scopes)
        self.page.click("#login-submit")

    def logout(self) -> None:
        self.page.click("#logout")

    def set_display_name(self, name: str) -> None:
        self.page.fill("#profile-new-name", name)
        self.page.click("#profile-save")

    def place_order(self, lines: list[tuple[str, int, str]], note: str = "") -> None:
        """lines: (sku, quantity, unit price as typed, e.g. "12.50")."""
        for _ in range(len(lines) - self.page.locator("#order-items tr").count()):
            self.page.click("#order-add-item")
        rows = self.page.locator("#order-items tr")
        for index, (sku, quantity, price) in enumerate(lines):
            row = rows.nth(index)
            row.locator(".sku").fill(sku)
            row.locator(".quantity").fill(str(quantity))
            row.locator(".price").fill(price)
        self.page.fill("#order-note", note)
        self.page.click("#order-submit")

    def fetch(self, path: str, *, method: str = "GET", token: str | None = None, body: Any = None) -> dict[str, Any]:
        """fetch() from inside the page (its origin, its CORS rules). Returns what the page
        can read: {ok, status, contentType, body, requestId} or {rejected: true, error}."""
        return self.page.evaluate(
            """async ([url, method, token, body]) => {
                const headers = {};
                if (token) headers.Authorization = `Bearer ${token}`;
                if (body !== null) headers["Content-Type"] = "application/json";
                try {
                    const response = await fetch(url, {
                        method, headers, body: body === null ? undefined : JSON.stringify(body),
                        credentials: "omit", cache: "no-store",
                    });
                    const text = await response.text();
                    let parsed = null;
                    try { parsed = JSON.parse(text); } catch {}
                    return {
                        rejected: false, ok: response.ok, status: response.status,
                        contentType: response.headers.get("Content-Type"),
                        body: parsed, requestId: response.headers.get("X-Request-Id"),
                    };
                } catch (error) {
                    return { rejected: true, error: `${error.name}: ${error.message}` };
                }
            }""",
            [self.gateway + path, method, token, body],
        )
