"""The gateway under test, in process: real keys, a real JWKS server, recording backends.

Everything runs in process on loopback: the gateway under test is the real create_app,
the backends and the JWKS endpoint are real aiohttp servers started by aiohttp_server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.clock import FakeEpochClock
from tests.support.stack_settings import PACKAGED_ROUTES
from tests.support.websocket_peer import is_websocket, websocket_peer

ISSUER = "http://gateway.test"
AUDIENCE = "passgate"
USER_ID = "3f1c2a4e-0000-4000-8000-000000000001"
ALL_USER_SCOPES = "users:read users:write orders:read orders:write"


@dataclasses.dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return jwk

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _new_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def mint(
    key: SigningKey,
    clock: FakeEpochClock,
    *,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    algorithm: str = "RS256",
    signing_key: Any = None,
    **claims: Any,
) -> str:
    """A token as auth would issue it, with any claim or header field overridden."""
    now = int(clock())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": USER_ID,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": ALL_USER_SCOPES,
        "client_id": "passgate-web",
    }
    payload.update(claims)
    for name in drop:
        payload.pop(name, None)
    headers = {"kid": key.kid, "typ": "at+jwt"}
    headers.update(header or {})
    return jwt.encode(
        payload,
        signing_key if signing_key is not None else key.private,
        algorithm=algorithm,
        headers=headers,
    )


class JwksServer:
    """A JWKS endpoint under the test's control that counts the fetches it answers."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False
        self.app = web.Application()
        self.app.router.add_get("/jwks.json", self._serve)
        self.server: Any = None

    async def _serve(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.failing:
            raise web.HTTPServiceUnavailable()
        return web.json_response({"keys": [key.jwk() for key in self.keys]})

    @property
    def url(self) -> str:
        return str(self.server.make_url("/jwks.json"))


# Order ids that make the recording backend misbehave; the routes file types order ids as
# UUIDs, so the behaviour is named by an id rather than a word in the path.
MISBEHAVE = {
    "drop": "00000000-0000-4000-8000-00000000d509",
    "slow": "00000000-0000-4000-8000-0000000051c0",
    "stream-out": "00000000-0000-4000-8000-0000005e0070",
    "stream-broken": "00000000-0000-4000-8000-0000005e0b40",
    "lie": "00000000-0000-4000-8000-00000000011e",
}


def _behaviour(path: str) -> str | None:
    return next((name for name, order_id in MISBEHAVE.items() if order_id in path), None)


async def recording_handler(request: web.Request) -> web.StreamResponse:
    """Echo what arrived: method, raw path, query, every header, the body size."""
    name = request.app[BACKEND_NAME]
    path = request.path
    if path == "/readyz":  # the gateway's readiness probe; not part of the recorded traffic
        return web.Response(status=200 if request.app[BACKEND_STATE]["ready"] else 503)
    if is_websocket(request):
        return await websocket_peer(request, request.app[BACKEND_STATE])
    request.app[BACKEND_LOG].append(
        {"backend": name, "method": request.method, "raw_path": request.raw_path,
         "headers": list(request.headers.items())}
    )
    behaviour = _behaviour(path)
    if behaviour == "slow":
        await asyncio.sleep(1)
    if behaviour == "drop":
        assert request.transport is not None
        request.transport.close()
        return web.Response()
    body = await request.read()
    if behaviour == "stream-broken":
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"x" * 65536)
        assert request.transport is not None
        request.transport.close()
        return response
    if behaviour == "stream-out":
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"x" * 65536)
        await response.write_eof()
        return response
    headers = {
        "X-Backend": name,
        "Connection": "X-Internal-Secret, keep-alive",
        "X-Internal-Secret": "backend-only",
        "Keep-Alive": "timeout=5",
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Credentials": "true",
        "Server": "backend/1.0",
    }
    return web.json_response(
        {
            "backend": name,
            "method": request.method,
            "raw_path": request.raw_path,
            "path": request.path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_length": len(body),
        },
        headers=headers,
        status=201 if request.method == "POST" else 200,
    )


BACKEND_NAME = web.AppKey("backend_name", str)
BACKEND_LOG = web.AppKey("backend_log", list)
BACKEND_STATE = web.AppKey("backend_state", dict)


def recording_app(name: str, log: list[dict[str, Any]]) -> web.Application:
    """A backend that answers every method and path with what it received, and logs it."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[BACKEND_NAME] = name
    app[BACKEND_LOG] = log
    app[BACKEND_STATE] = {"ready": True}
    app.router.add_route("*", "/{tail:.*}", recording_handler)
    return app


def write_routes(path: Path, upstreams: dict[str, list[str]], **route_overrides: Any) -> Path:
    """The packaged routes.yaml with test upstreams and optional per-route overrides
    (`extra_routes`: routes put first; `issuers`: the file's declared issuers)."""
    packaged = yaml.safe_load(PACKAGED_ROUTES.read_text())
    # Readiness is probed often here, so tests see a replica turn unready within moments.
    packaged["upstreams"] = {
        name: {"replicas": urls, "health_interval": 0.1} for name, urls in upstreams.items()
    }
    extra = route_overrides.pop("extra_routes", [])
    issuers = route_overrides.pop("issuers", None)
    if issuers:
        packaged["issuers"] = issuers
    names = {route["name"].replace("-", "_") for route in packaged["routes"]}
    unknown = set(route_overrides) - names
    assert not unknown, f"overrides for routes the packaged file does not have: {sorted(unknown)}"
    for route in packaged["routes"]:
        route.update(route_overrides.get(route["name"].replace("-", "_"), {}))
    packaged["routes"] = extra + packaged["routes"]
    path.write_text(yaml.safe_dump(packaged))
    return path


@dataclasses.dataclass
class GatewayUnderTest:
    """A gateway app (behind a test client) and everything around it: the JWKS server it
    trusts, the keys, the recording backends and what they logged. Not a whole system:
    that is devstack's Stack (tests/support/stack.py)."""

    client: Any
    app: web.Application
    clock: FakeEpochClock
    jwks: JwksServer
    keys: dict[str, SigningKey]
    backends: dict[str, Any]
    log: list[dict[str, Any]]
    upstreams: dict[str, list[str]]

    def token(self, key: str = "k1", **kwargs: Any) -> str:
        return mint(self.keys[key], self.clock, **kwargs)

    def bearer(self, key: str = "k1", **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(key, **kwargs)}"}

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        from common.app_keys import REGISTRY

        value = self.app[REGISTRY].get_sample_value(name, labels or {})
        return value or 0.0


GatewayFactory = Callable[..., Awaitable[GatewayUnderTest]]


def new_key(kid: str) -> SigningKey:
    return _new_key(kid)


def received_headers(body: dict[str, Any]) -> dict[str, str]:
    """The headers a recording backend saw, keyed in lower case."""
    return {k.lower(): v for k, v in body["headers"]}


async def raw_request(client: Any, request_line_target: str, *, method: str = "GET",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send a request target byte for byte (no client-side normalisation); status and body."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"{method} {request_line_target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    # surrogateescape: a test can send any byte, "\udcff" being the byte 0xff.
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape"))
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
