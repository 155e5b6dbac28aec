"""CORS attacks (PortSwigger's CORS labs): origins that look like an allowed one, and `null`.

A refused origin's preflight is a 4xx problem+json without a single Access-Control-*
header, and its actual requests are answered without Access-Control-Allow-Origin, so the
browser keeps the answer from the page. An allowed origin still works (the control).
"""

from __future__ import annotations

import pytest

from devstack.stack import Stack
from tests.support.hostile import Client, Secrets, User, assert_refused

pytestmark = pytest.mark.e2e


def lookalikes(origin: str) -> dict[str, str]:
    """Origins one mistake away from `origin` (http://host:port)."""
    scheme, _, authority = origin.partition("://")
    host, _, port = authority.partition(":")
    return {
        "null": "null",
        "suffix-domain": f"{origin}.evil.example",
        "suffix-host-label": f"{scheme}://{host}.evil.example:{port}",
        "suffix-port-digit": f"{origin}0",
        "prefix-host": f"{scheme}://evil{host}:{port}",
        "prefix-subdomain": f"{scheme}://evil.{host}:{port}",
        "other-scheme": f"https://{authority}",
        "other-port": f"{scheme}://{host}:{int(port) + 1}",
        "default-port": f"{scheme}://{host}",
        "trailing-slash": f"{origin}/",
        "upper-case": origin.upper(),
        "userinfo": f"{scheme}://{authority}@evil.example",
        "two-origins": f"{origin} https://evil.example",
        "comma-list": f"{origin},https://evil.example",
        "wildcard": "*",
        "file-scheme": "file://",
    }


CASES = list(lookalikes("http://localhost:3000"))


@pytest.fixture(scope="module")
def allowed(stack: Stack) -> str:
    return stack.allowed_origins[0]


def _no_cors_headers(reply) -> None:
    granted = [name for name in reply.headers if name.lower().startswith("access-control-")]
    assert granted == [], f"refused origin got {granted}"
    assert "origin" in (reply.headers.get("Vary") or "").lower()


def test_the_allowed_origin_is_granted(gateway: Client, allowed: str, alice: User) -> None:
    """The control: the same requests from the allowed origin are granted."""
    preflight = gateway.request(
        "OPTIONS",
        "/orders",
        headers={"Origin": allowed, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == allowed
    reply = gateway.get("/users/me", headers={"Origin": allowed}, token=alice.access_token)
    assert reply.status == 200 and reply.headers["Access-Control-Allow-Origin"] == allowed


@pytest.mark.parametrize("case", CASES)
def test_a_lookalike_origins_preflight_is_refused(
    gateway: Client, allowed: str, secrets: Secrets, case: str
) -> None:
    origin = lookalikes(allowed)[case]
    reply = gateway.request(
        "OPTIONS",
        "/orders",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert_refused(reply, 403, secrets=secrets)
    _no_cors_headers(reply)


@pytest.mark.parametrize("case", CASES)
def test_a_lookalike_origin_cannot_read_answers(
    gateway: Client, allowed: str, alice: User, secrets: Secrets, case: str
) -> None:
    """The gateway answers (it cannot tell a browser from curl), but grants nothing: neither
    the 401 problem nor a successful answer carries Access-Control-Allow-Origin."""
    origin = lookalikes(allowed)[case]
    refused = gateway.get("/users/me", headers={"Origin": origin})
    assert_refused(refused, 401, secrets=secrets)
    _no_cors_headers(refused)
    served = gateway.get("/users/me", headers={"Origin": origin}, token=alice.access_token)
    assert served.status == 200
    _no_cors_headers(served)


def test_credentials_are_never_allowed(gateway: Client, allowed: str) -> None:
    """Tokens travel in Authorization, never cookies: no origin is told credentials are OK."""
    reply = gateway.request(
        "OPTIONS", "/orders", headers={"Origin": allowed, "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Credentials" not in reply.headers
