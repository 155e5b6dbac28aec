"""Property: any text offered as a refresh grant that is not a live refresh token gets
RFC 6749's invalid_grant (400), never invalid_request, a 5xx or a token."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.auth.app import create_app

# Any Unicode text a form can carry (no lone surrogates: they cannot be UTF-8 encoded):
# short strings, and strings longer than any refresh token (an access token, say).
_CHARACTERS = st.characters(exclude_categories=("Cs",))
GRANTS = st.one_of(
    st.text(_CHARACTERS, min_size=1, max_size=100),
    st.text(_CHARACTERS, min_size=500, max_size=3000),
)


def test_every_unknown_refresh_grant_is_invalid_grant(make_settings, clock) -> None:
    loop = asyncio.new_event_loop()
    client = TestClient(TestServer(create_app(make_settings(), clock=clock)), loop=loop)
    loop.run_until_complete(client.start_server())

    async def offer(grant: str) -> None:
        response = await client.post(
            "/auth/token", data={"grant_type": "refresh_token", "refresh_token": grant}
        )
        assert response.status == 400, grant
        assert (await response.json())["error"] == "invalid_grant"

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(GRANTS)
    def check(grant: str) -> None:
        loop.run_until_complete(offer(grant))

    try:
        check()
    finally:
        loop.run_until_complete(client.close())
        loop.close()
