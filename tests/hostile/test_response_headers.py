"""What every answer says about itself: no software version, nosniff, no-store where it is
personal, and a problem document with a detail on every error path, through the real stack.

The review found `Server: Python/3.11 aiohttp/3.14.5` on every answer, no
`X-Content-Type-Options`, authenticated answers without `Cache-Control: no-store`
(RFC 9111: shared caches must not keep personal data), and 404/405 problems without
`detail`. The class: every answer the gateway gives or relays (success, each error kind,
preflight, health, OpenAPI) and every error path of every process, admin ports included.
"""

from __future__ import annotations

import pytest

from devstack.stack import Stack
from tests.support.hostile import Client, Reply, User

pytestmark = pytest.mark.e2e


def _answers(gateway: Client, alice: User) -> dict[str, Reply]:
    token = alice.access_token
    origin = {"Origin": "http://localhost:3000"}
    return {
        "users-me": gateway.get("/users/me", token=token),
        "orders": gateway.get("/orders", token=token),
        "order-404": gateway.get("/orders/00000000-0000-4000-8000-000000000000", token=token),
        "cancel-404": gateway.post("/orders/00000000-0000-4000-8000-000000000000/cancel", token=token),
        "no-token-401": gateway.get("/users/me"),
        "bad-token-401": gateway.get("/users/me", token="not.a.token"),
        "scope-403": gateway.get("/users/00000000-0000-4000-8000-000000000000", token=token),
        "route-404": gateway.get("/.env"),
        "method-405": gateway.request("DELETE", "/auth/login"),
        "jwks": gateway.get("/.well-known/jwks.json"),
        "login-401": gateway.post("/auth/login", json_body={"username": "nobody-here", "password": "x" * 12}),
        "preflight": gateway.request(
            "OPTIONS", "/orders",
            headers={**origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization"},
        ),
        "preflight-refused": gateway.request(
            "OPTIONS", "/orders",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ),
        "healthz": gateway.get("/healthz"),
        "openapi": gateway.get("/openapi.json"),
    }


def test_no_answer_names_the_software_and_every_one_says_nosniff(gateway: Client, alice: User) -> None:
    for name, reply in _answers(gateway, alice).items():
        assert reply.headers.get("Server") is None, (name, reply.headers.get("Server"))
        assert reply.headers.get("X-Content-Type-Options") == "nosniff", name


def test_personal_answers_are_never_stored_and_public_ones_keep_their_policy(
    gateway: Client, alice: User
) -> None:
    answers = _answers(gateway, alice)
    for name in ("users-me", "orders", "order-404", "cancel-404", "scope-403", "bad-token-401"):
        assert answers[name].headers.get("Cache-Control") == "no-store", name
    # Errors, preflights and health have nothing worth caching either.
    for name in ("no-token-401", "route-404", "method-405", "login-401", "preflight", "healthz"):
        assert "no-store" in (answers[name].headers.get("Cache-Control") or ""), name
    # A backend's own caching policy for public data stands (keys may be cached a while).
    assert "max-age" in answers["jwks"].headers["Cache-Control"]
    assert "max-age" in answers["openapi"].headers["Cache-Control"]


def test_every_error_is_a_problem_with_a_detail(gateway: Client, alice: User) -> None:
    for name, reply in _answers(gateway, alice).items():
        if reply.status < 400:
            continue
        assert reply.content_type == "application/problem+json", (name, reply.status)
        problem = reply.json()
        assert {"type", "title", "status", "detail", "request_id"} <= problem.keys(), (name, problem)
        assert problem["detail"], name


@pytest.mark.parametrize("component", ["gateway", "auth", "users", "orders"])
def test_every_process_and_port_answers_misses_with_a_problem(stack: Stack, component: str) -> None:
    """Router and method misses on each process's own port and on the gateway's admin port."""
    urls = [stack.url(component)] if component != "gateway" else [stack.url("gateway_admin")]
    for url in urls:
        client = Client(url)
        for reply in (client.get("/no-such-path"), client.request("DELETE", "/healthz")):
            assert reply.status in (404, 405)
            assert reply.content_type == "application/problem+json"
            problem = reply.json()
            assert problem["detail"] and problem["status"] == reply.status
            assert reply.headers.get("Server") is None
