"""Per-route CORS in Chromium: one route narrowed to one of the two allowed origins. The
other origin's page cannot read that route (the browser's preflight is refused) and still
reads every other route; the narrowed-to origin reads both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from devstack.stack import PortPlan, Stack, StackConfig
from tests.support.stack import running_stack
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo on three origins; GET /users/me narrowed to the first allowed origin."""
    data_dir = tmp_path_factory.mktemp("route-cors-stack")
    ports = PortPlan.free(frontends=3)
    first_allowed = f"http://localhost:{ports.frontends[0]}"
    routes = generous_routes(
        data_dir / "routes.yaml", **{"users-me-read": {"cors": {"origins": [first_allowed]}}}
    )
    config = StackConfig(
        data_dir=data_dir,
        ports=ports,
        serve_frontend=True,
        env={"auth": dict(CHEAP_ARGON2), "gateway": {"PASSGATE_ROUTES_FILE": str(routes)}},
    )
    with running_stack(config) as running:
        assert running.allowed_origins[0] == first_allowed
        yield running


def test_a_narrowed_route_is_readable_only_from_its_origins(stack, open_demo) -> None:
    narrowed_to, other = stack.allowed_origins[0], stack.allowed_origins[1]
    outside = open_demo(other, "route-cors-outside")
    answer = outside.fetch("/users/me", token="not-a-token")
    assert answer["rejected"] is True, answer  # the preflight is refused: a network error
    assert answer["error"].startswith("TypeError")
    elsewhere = outside.fetch("/orders", token="not-a-token")
    assert elsewhere["rejected"] is False and elsewhere["status"] == 401, elsewhere

    inside = open_demo(narrowed_to, "route-cors-inside")
    for path in ("/users/me", "/orders"):
        answer = inside.fetch(path, token="not-a-token")
        assert answer["rejected"] is False, (path, answer)
        assert answer["status"] == 401
        assert answer["body"]["status"] == 401
