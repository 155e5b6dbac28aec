"""Property: whatever body and credentials reach /auth/revoke or /auth/introspect, the
answer is an RFC 6749 section 5.2 error or the endpoint's own 200, never a 5xx, on SQLite
and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import base64
import json
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.auth.app import create_app
from services.auth.app_keys import OPENAPI
from tests.support.auth_client import add_client, basic, login, register
from tests.support.servers import create_postgres_database, drop_postgres_database

ENDPOINTS = ("/auth/revoke", "/auth/introspect")
OAUTH_ERRORS = {
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
    "unsupported_token_type",
}
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
_LONG = st.text(min_size=4000, max_size=6000, alphabet="ab.=_-")
FIELD_NAMES = st.sampled_from(["token", "token_type_hint", "client_id", "client_secret", "x"])
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/x-www-form-urlencoded; charset=no-such-charset",
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
    ]
)


def _form(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs).encode()


@st.composite
def requests(draw, real: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body): a form of known and unknown fields, repeated or not, with
    hostile values and real tokens and secrets mixed in; or raw bytes."""
    value = st.one_of(_TEXT, _LONG, st.sampled_from(sorted(real.values())))
    body = draw(
        st.one_of(
            st.lists(st.tuples(FIELD_NAMES, value), max_size=6).map(_form),
            st.binary(max_size=300),
        )
    )
    headers = {"Content-Type": draw(CONTENT_TYPES)}
    authorization = draw(
        st.one_of(
            st.none(),
            st.sampled_from(sorted(basic(real["server"], real["secret"]).values())),
            st.binary(max_size=80).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
        )
    )
    if authorization is not None:
        headers["Authorization"] = authorization
    return draw(st.sampled_from(ENDPOINTS)), headers, body


async def _setup(client: TestClient) -> dict[str, str]:
    secret = await add_client(client, "reports-api", "", may_introspect=True)
    await register(client)
    pair = await login(client)
    return {
        "server": "reports-api",
        "secret": secret,
        "access": pair["access_token"],
        "refresh": pair["refresh_token"],
        "first-party": "passgate",
    }


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_requests_never_get_a_5xx(backend, make_settings, clock, tmp_path) -> None:
    loop = asyncio.new_event_loop()
    url = (
        f"sqlite:///{tmp_path / 'hostile.db'}"
        if backend == "sqlite"
        else loop.run_until_complete(create_postgres_database())
    )
    # Failed client authentications are many here; the throttle has its own tests.
    auth_settings = make_settings(database_url=url, login_max_failures_per_address=10_000)
    app = create_app(auth_settings, clock=clock)
    client = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    real = loop.run_until_complete(_setup(client))
    document = app[OPENAPI]

    async def send(path: str, headers: dict[str, str], body: bytes) -> None:
        response = await client.post(path, data=body, headers=headers)
        raw = await response.read()
        assert response.status in (200, 400, 401, 403, 413, 415, 429), (response.status, raw)
        assert response.headers.get("Cache-Control") == "no-store" or response.status in (413, 415)
        if response.status == 200:
            if path == "/auth/revoke":
                assert raw == b""
            else:
                document.check("Introspection", json.loads(raw))
        elif response.content_type == "application/json":
            error = json.loads(raw)
            assert error["error"] in OAUTH_ERRORS
            for secret in (real["secret"], real["access"], real["refresh"]):
                assert secret not in raw.decode()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests(real))
    def check(request: tuple[str, dict[str, str], bytes]) -> None:
        loop.run_until_complete(send(*request))

    try:
        check()
    finally:
        loop.run_until_complete(client.close())
        if backend == "postgres":
            loop.run_until_complete(drop_postgres_database(url))
        loop.close()
