"""The browser demo in real Chromium against the real system, on several origins.

Each test opens pages with `open_demo(origin, name)` (a fresh browser context each, so its own
sessionStorage) and acts as a person would. Usernames are unique per run: one stack serves
the whole module.
"""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

try:
    from playwright.sync_api import expect

    from tests.support.browser_pages import jwt_claims
except ImportError:  # the `playwright` fixture skips (or, in CI, fails) with the reason
    pass

pytestmark = pytest.mark.browser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_whole_flow_on_two_allowed_origins_at_once(stack, open_demo) -> None:
    """Two users on two origins, step by step in turn: register, profile, orders (placed,
    paged, cancelled), reload, logout, log in again. Neither sees the other's data."""
    origin_a, origin_b = stack.allowed_origins
    a = open_demo(origin_a, "origin-a")
    b = open_demo(origin_b, "origin-b")
    for demo, origin in ((a, origin_a), (b, origin_b)):
        expect(demo.page.locator("#page-origin")).to_have_text(origin)
        expect(demo.page.locator("#gateway-status")).to_have_attribute("data-state", "allowed")

    user_a, user_b = unique("alice"), unique("bob")
    a.register(user_a, "Alice")
    b.register(user_b, "Bob")
    a.expect_signed_in(user_a)
    b.expect_signed_in(user_b)
    expect(a.page.locator("#profile-display-name")).to_have_text("Alice")
    expect(b.page.locator("#profile-display-name")).to_have_text("Bob")

    # Server text is shown as text: markup in a display name stays inert characters.
    a.set_display_name("Alice <b>from</b> A")
    b.set_display_name("Bob from B")
    expect(a.page.locator("#profile-display-name")).to_have_text("Alice <b>from</b> A")
    expect(a.page.locator("#profile-display-name b")).to_have_count(0)
    expect(b.page.locator("#profile-display-name")).to_have_text("Bob from B")

    # Orders, interleaved: A places four (one with two lines), B places two.
    a.place_order([("A-BOOK", 2, "12.50"), ("A-PEN", 1, "0.99")], note="<img src=x> first")
    a.expect_ok("total 25.99")
    b.place_order([("B-MUG", 1, "8")])
    b.expect_ok("total 8.00")
    for n in (2, 3, 4):
        a.place_order([(f"A-ITEM-{n}", n, "1.00")])
        expect(a.order_rows()).to_have_count(n)
    b.place_order([("B-TEA", 3, "2.25")])
    expect(b.order_rows()).to_have_count(2)
    expect(a.page.locator("#orders-body td.note").last).to_have_text("<img src=x> first")
    # Each list holds only its owner's orders, newest first.
    expect(a.order_rows().first).to_contain_text("A-ITEM-4 × 4")
    expect(b.order_rows().first).to_contain_text("B-TEA × 3")
    assert all(sku.startswith("A-") for sku in a.page.locator("#orders-body td.items-cell").all_inner_texts())
    assert all(sku.startswith("B-") for sku in b.page.locator("#orders-body td.items-cell").all_inner_texts())

    # Pagination with cursors: three per page gives A two pages.
    a.page.select_option("#orders-page-size", "3")
    expect(a.order_rows()).to_have_count(3)
    expect(a.page.locator("#orders-newer")).to_be_disabled()
    a.page.click("#orders-older")
    expect(a.page.locator("#orders-page")).to_have_text("Page 2")
    expect(a.order_rows()).to_have_count(1)
    expect(a.order_rows().first).to_contain_text("A-BOOK × 2")
    expect(a.page.locator("#orders-older")).to_be_disabled()
    a.page.click("#orders-newer")
    expect(a.page.locator("#orders-page")).to_have_text("Page 1")
    expect(a.order_rows()).to_have_count(3)

    # Cancel: A its newest order, B its oldest.
    a.order_rows().first.locator("button.cancel").click()
    b.order_rows().last.locator("button.cancel").click()
    expect(a.order_rows().first).to_have_attribute("data-status", "cancelled")
    expect(b.order_rows().last).to_have_attribute("data-status", "cancelled")
    expect(b.order_rows().first).to_have_attribute("data-status", "placed")

    # A reload forgets the in-memory access token; the tab's refresh token restores the session.
    a.page.reload()
    a.expect_signed_in(user_a)
    expect(a.page.locator("#profile-display-name")).to_have_text("Alice <b>from</b> A")

    # Tokens live in memory and sessionStorage only: no cookie, nothing in localStorage.
    for demo in (a, b):
        assert demo.page.context.cookies() == []
        assert demo.page.evaluate("() => localStorage.length") == 0
        assert demo.refresh_token_in_storage()

    a.logout()
    b.logout()
    a.expect_signed_out()
    b.expect_signed_out()
    assert a.refresh_token_in_storage() is None

    # Log in again (B first this time): the data is still there.
    b.login(user_b)
    a.login(user_a)
    b.expect_signed_in(user_b)
    a.expect_signed_in(user_a)
    expect(a.order_rows()).to_have_count(4)
    expect(b.order_rows()).to_have_count(2)
    # Every call of each page went to the gateway with a bearer token of its own user.
    assert {jwt_claims(token)["sub"] for token in a.bearer_tokens} == {a.text("profile-id")}
    assert {jwt_claims(token)["sub"] for token in b.bearer_tokens} == {b.text("profile-id")}


def test_an_order_placed_elsewhere_appears_live_without_a_reload(stack, open_demo) -> None:
    """The orders card holds a WebSocket to /orders/stream through the gateway: an order
    placed on another origin's page shows up on this one without a reload, also after the
    5-second token the socket opened with has expired (the gateway closes it with 4001 and
    the page opens another with a fresh token, resuming from its last cursor, so a change
    made between the two sockets is not lost). The token never appears in the URL."""
    origin_a, origin_b = stack.allowed_origins
    watcher = open_demo(origin_a, "live-watcher")
    sockets: list[str] = []
    watcher.page.on("websocket", lambda socket: sockets.append(socket.url))
    user = unique("carol")
    watcher.register(user, "Carol")
    watcher.expect_signed_in(user)
    expect(watcher.page.locator("#stream-status")).to_have_attribute("data-state", "live")
    placer = open_demo(origin_b, "live-placer")
    placer.login(user)
    placer.expect_signed_in(user)

    placer.place_order([("LIVE-1", 1, "3.00")], note="placed on B")
    events = watcher.page.locator("#stream-events li")
    expect(events).to_have_count(1)
    expect(events.first).to_have_attribute("data-status", "placed")
    expect(events.first).to_contain_text("placed on B")
    expect(watcher.order_rows().first).to_contain_text("LIVE-1 × 1")

    ttl = int(stack.config.env["auth"]["PASSGATE_ACCESS_TOKEN_TTL"])
    watcher.page.wait_for_timeout(2 * ttl * 1000)  # the first socket's token is gone
    expect(watcher.page.locator("#stream-status")).to_have_attribute("data-state", "live")
    placer.order_rows().first.locator("button.cancel").click()
    expect(events).to_have_count(2)
    expect(events.first).to_have_attribute("data-status", "cancelled")
    expect(watcher.order_rows().first).to_have_attribute("data-status", "cancelled")
    assert len(sockets) >= 2  # reopened after the gateway closed the expired one
    for url in sockets:  # the token never rides in the URL; only the resume cursor does
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == stack.gateway_url.replace("http", "ws", 1) + "/orders/stream"
        assert set(parse_qs(parts.query)) <= {"since"}


def test_page_refreshes_the_access_token_by_itself(stack, open_demo) -> None:
    """With 5-second access tokens, the page renews the token before it expires, and an API
    call made after the first token's expiry succeeds with a newer token."""
    demo = open_demo(stack.allowed_origins[0], "silent-refresh")
    username = unique("ttl")
    demo.register(username, "Short Lived")
    demo.expect_signed_in(username)
    first = demo.bearer_tokens[0]
    claims = jwt_claims(first)
    assert claims["exp"] - claims["iat"] == int(stack.config.env["auth"]["PASSGATE_ACCESS_TOKEN_TTL"])

    # The page refreshes on its own, with no user action.
    expect(demo.page.locator("#token-refreshes")).not_to_have_attribute("data-count", "0")

    # Wait out the first token's lifetime (this is the point of the test: real expiry).
    remaining = claims["exp"] + 1 - time.time()
    if remaining > 0:
        demo.page.wait_for_timeout(remaining * 1000)
    refused = demo.fetch("/users/me", token=first)
    assert refused["status"] == 401, "the gateway must refuse the expired first token"

    with demo.page.expect_response(
        lambda response: response.url == f"{stack.gateway_url}/users/me" and response.request.method == "GET"
    ) as answered:
        demo.page.click("#profile-reload")
    response = answered.value
    assert response.status == 200, "the page must not need a 401 to renew its token"
    used = response.request.headers["authorization"].removeprefix("Bearer ")
    assert used != first
    assert jwt_claims(used)["exp"] > claims["exp"]
    assert jwt_claims(used)["sub"] == claims["sub"]
    expect(demo.page.locator("#profile-username")).to_have_text(username)
    expect(demo.notice).not_to_have_attribute("data-kind", "error")
    assert int(demo.page.locator("#token-refreshes").get_attribute("data-count")) >= 1


def test_a_401_from_an_api_call_refreshes_once_and_retries(stack, open_demo) -> None:
    """The page's own clock is frozen (so its timer cannot renew the token) while the real
    token expires; the next call gets a 401, and the page refreshes once and retries."""
    demo = open_demo(stack.allowed_origins[1], "retry-after-401",
                     before_load=lambda demo: demo.page.clock.install())
    username = unique("retry")
    demo.register(username, "Retry")
    demo.expect_signed_in(username)
    first = demo.bearer_tokens[0]
    demo.page.clock.pause_at(time.time() + 0.5)  # Unix seconds
    remaining = jwt_claims(first)["exp"] + 1 - time.time()
    if remaining > 0:
        time.sleep(remaining)  # real time passes for the gateway; the page's clock stands still

    exchanges: list[tuple[str, str, int]] = []
    demo.page.on(
        "response",
        lambda r: exchanges.append((r.request.method, r.url.removeprefix(stack.gateway_url), r.status))
        if r.url.startswith(stack.gateway_url) and r.request.method != "OPTIONS"
        else None,
    )
    demo.page.click("#profile-reload")
    expect(demo.page.locator("#activity li").first).to_contain_text("retry after refresh")
    # The orders list the page loaded at sign-in may answer late (its timer stood still with
    # the page's clock); only the profile call and the refresh are this test's exchange.
    profile_and_refresh = [e for e in exchanges if e[1] in ("/users/me", "/auth/refresh")]
    assert profile_and_refresh == [
        ("GET", "/users/me", 401), ("POST", "/auth/refresh", 200), ("GET", "/users/me", 200)
    ]
    assert demo.bearer_tokens[-1] != first
    expect(demo.notice).not_to_have_attribute("data-kind", "error")


def test_logout_revokes_the_refresh_token(stack, open_demo) -> None:
    demo = open_demo(stack.allowed_origins[1], "logout")
    username = unique("bye")
    demo.register(username, "Leaving")
    demo.expect_signed_in(username)
    with demo.page.expect_request(f"{stack.gateway_url}/auth/logout") as sent:
        demo.logout()
    revoked = sent.value.post_data_json["refresh_token"]
    demo.expect_signed_out()
    demo.expect_ok("Logged out")
    assert demo.refresh_token_in_storage() is None

    # The token the page gave up no longer refreshes, tried from the page itself.
    answer = demo.fetch("/auth/refresh", method="POST", body={"refresh_token": revoked})
    assert answer["status"] == 401, answer
    assert answer["contentType"].startswith("application/problem+json")
    # And a reload does not bring the session back.
    demo.page.reload()
    demo.expect_signed_out()


def test_refused_origin_sees_a_network_error_and_allowed_origin_reads_a_401(stack, open_demo) -> None:
    refused_origin = stack.frontend_origins[2]
    assert refused_origin not in stack.allowed_origins
    refused = open_demo(refused_origin, "refused-origin")
    expect(refused.page.locator("#page-origin")).to_have_text(refused_origin)
    expect(refused.page.locator("#gateway-status")).to_have_attribute("data-state", "refused")
    # From the page's own code: fetch rejects, with no status and no body to read.
    answer = refused.fetch("/users/me", token="not-a-token")
    assert answer["rejected"] is True, answer
    assert answer["error"].startswith("TypeError")
    # Through the UI: a readable "network error" that names the likely cause.
    refused.login("someone", "a wrong password, surely")
    refused.expect_notice("network", "network error")
    expect(refused.notice).to_contain_text("CORS")

    allowed = open_demo(stack.allowed_origins[0], "allowed-401")
    for token in ("not-a-token", None):
        answer = allowed.fetch("/users/me", token=token)
        assert answer["rejected"] is False, answer
        assert answer["status"] == 401
        assert answer["contentType"].startswith("application/problem+json")
        assert answer["body"]["status"] == 401
        assert answer["body"]["detail"]
        assert re.fullmatch(r"[\w.:-]{8,}", answer["body"]["request_id"])
    # Through the UI: the status, the problem's detail and its request id.
    allowed.login(unique("nobody"), "a wrong password, surely")
    allowed.expect_notice("401", "Unauthorized")
    expect(allowed.page.locator("#request-id")).to_have_text(re.compile(r"[\w.:-]{8,}"))


def test_missing_scope_shows_a_readable_403(stack, open_demo) -> None:
    demo = open_demo(stack.allowed_origins[0], "forbidden-403")
    username = unique("narrow")
    demo.register(username, "Narrow")
    demo.expect_signed_in(username)
    demo.logout()
    demo.expect_signed_out()
    demo.login(username, scopes=["users:read", "orders:read"])
    demo.expect_signed_in(username)
    expect(demo.page.locator("#session-scopes .chip")).to_have_count(2)
    assert sorted(demo.page.locator("#session-scopes .chip").all_inner_texts()) == ["orders:read", "users:read"]
    demo.place_order([("NOPE", 1, "1.00")])
    demo.expect_notice("403", "orders:write")
    expect(demo.page.locator("#request-id")).not_to_be_empty()


def test_login_throttling_shows_a_429_with_retry_after(stack, open_demo) -> None:
    demo = open_demo(stack.allowed_origins[1], "throttled-429")
    username = unique("locked")  # unknown accounts are throttled alike
    statuses = []
    for _ in range(10):  # bounded: auth locks an account out after a few failures
        demo.login(username, "wrong password, again")
        expect(demo.notice).to_have_attribute("data-status", re.compile(r"^(401|429)$"))
        statuses.append(demo.notice.get_attribute("data-status"))
        if statuses[-1] == "429":
            break
        demo.page.click("#notice button.close")
    assert statuses[-1] == "429", statuses
    expect(demo.notice).to_contain_text("Too Many Requests")
    expect(demo.page.locator("#retry-after")).to_have_text(re.compile(r"^(\d+ min )?\d+ s$"))
    assert int(demo.page.locator("#retry-after").get_attribute("data-seconds")) >= 1
    expect(demo.page.locator("#login-submit")).to_be_disabled()


def test_screenshot_of_each_origin(stack, open_demo, artifacts) -> None:
    for index, origin in enumerate(stack.frontend_origins):
        demo = open_demo(origin, f"origin-{index + 1}")
        expect(demo.page.locator("#gateway-status")).not_to_have_attribute("data-state", "checking")
        path = artifacts / f"origin-{index + 1}-{origin.split('//')[1].replace(':', '-')}.png"
        demo.page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes().startswith(PNG_SIGNATURE)
