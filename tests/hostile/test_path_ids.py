"""An id in a path that cannot be an id is a 404 before any authorization decision.

The review found `/users/%0d%0a%0d%0a<html>` answered 403 (the admin scope was checked
before the id was looked at). The class: every path parameter that names a resource by id,
given values of any other shape, on every route that has one, for callers with and
without the scope and without any token. Route parameters are typed in the routes file
(`{id:uuid}`), so such a path matches no route and reaches no backend.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import Client, User

pytestmark = pytest.mark.e2e

ID_ROUTES = [("GET", "/users/{}"), ("GET", "/orders/{}"), ("POST", "/orders/{}/cancel")]
NOT_IDS = [
    "%0d%0a%0d%0a<html>", "%0D%0A", "not-an-id", "12345", "00000000-0000-4000-8000-00000000000",
    "00000000-0000-4000-8000-0000000000000", "{id}", "%20", "me2", "%00", "x" * 300,
    "00000000000040008000000000000000",
]


def _generated_non_ids() -> list[str]:
    found: list[str] = []

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.text(min_size=1, max_size=40))
    def collect(text: str) -> None:
        try:
            uuid.UUID(text)
            return  # a real id: not this test's business
        except ValueError:
            pass
        encoded = quote(text, safe="")
        if encoded not in (".", "..") and "%2F" not in encoded and "%2E" not in encoded.upper():
            found.append(encoded)

    collect()
    return found


@pytest.mark.parametrize(("method", "template"), ID_ROUTES)
def test_a_value_that_is_not_an_id_is_404_for_everyone(
    gateway: Client, alice: User, method: str, template: str
) -> None:
    for value in NOT_IDS + _generated_non_ids():
        for token in (alice.access_token, None):
            reply = gateway.request(method, template.format(value), token=token)
            assert reply.status in (400, 404), (method, value, reply.status, reply.body[:200])
            assert reply.content_type == "application/problem+json"


def test_a_well_formed_id_still_meets_the_scope_check(gateway: Client, alice: User) -> None:
    """The typed parameter changes nothing for real ids: without admin, 403; unknown order, 404."""
    some_id = str(uuid.uuid4())
    assert gateway.get(f"/users/{some_id}", token=alice.access_token).status == 403
    assert gateway.get(f"/orders/{some_id}", token=alice.access_token).status == 404
    assert gateway.get(f"/orders/{some_id.upper()}", token=alice.access_token).status == 404
