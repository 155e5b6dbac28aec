"""What the hostile tests share: a plain HTTP client that sends exactly what it is given,
raw-socket exchanges, token forging, and the checks every refused attack must pass.

The client is `http.client` on purpose: it neither normalises paths nor adds headers the
test did not ask for (beyond Host and Content-Length), so each attack goes out as written.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.stack import ROOT, PortPlan, Stack, StackConfig
from tests.support.http import PASSWORD, PROBLEM_TYPE
from tests.support.stack_settings import CHEAP_ARGON2, generous_routes

# -- the system under attack ------------------------------------------------------------

SLOW_BODY_TIMEOUT = 3
# Short, so the slow-header test sees connections cut within seconds (the default is 10).
REQUEST_HEAD_TIMEOUT = 3


def hostile_config(data_dir: Path, *, log_level: str = "DEBUG") -> StackConfig:
    # A short limit for the whole exchange, so a slow-body attack is cut off quickly.
    routes = generous_routes(
        data_dir / "routes.yaml", **{"orders-place": {"timeout": SLOW_BODY_TIMEOUT}}
    )
    env = {
        "auth": dict(CHEAP_ARGON2),
        "gateway": {
            "PASSGATE_ROUTES_FILE": str(routes),
            "PASSGATE_JWKS_REFETCH_COOLDOWN": "1",
            "PASSGATE_REQUEST_HEAD_TIMEOUT_SECONDS": str(REQUEST_HEAD_TIMEOUT),
        },
    }
    return StackConfig(
        data_dir=data_dir, ports=PortPlan.free(frontends=2), env=env, log_level=log_level
    )


# -- requests sent exactly as given, and the checks on refusals ---------------------------

# What no answer may carry: a Python traceback, PEM key material, a private JWK member.
LEAK_MARKERS = ("Traceback (most recent call last)", 'File "/', "-----BEGIN", '"d":', "'d':")


@dataclasses.dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def header_text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.headers.items())


class Client:
    """Blocking requests to one base URL, sent exactly as given."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        body: bytes | str | None = None,
        json_body: Any = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        if json_body is not None:
            body = json.dumps(json_body)
            items.append(("Content-Type", "application/json"))
        if isinstance(body, str):
            body = body.encode()
        if token is not None:
            items.append(("Authorization", f"Bearer {token}"))
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.putrequest(method, target, skip_accept_encoding=True)
            for name, value in items:
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()

    def get(self, target: str, **kwargs: Any) -> Reply:
        return self.request("GET", target, **kwargs)

    def post(self, target: str, **kwargs: Any) -> Reply:
        return self.request("POST", target, **kwargs)


@dataclasses.dataclass
class User:
    id: str
    username: str
    password: str
    access_token: str
    refresh_token: str
    scope: str


class Secrets:
    """Every secret the session handled: none may appear in a log, a metric or an answer."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str | None) -> None:
        self.values.update(v for v in values if v)

    def found_in(self, text: str) -> list[str]:
        return sorted(_redact(v) for v in self.values if v in text)


def _redact(secret: str) -> str:
    return f"{secret[:6]}...({len(secret)} characters)"


def register(client: Client, secrets: Secrets, *, password: str = PASSWORD) -> tuple[str, str]:
    username = f"h-{uuid.uuid4().hex[:16]}"
    secrets.add(password)
    reply = client.post(
        "/auth/register",
        json_body={"username": username, "password": password, "display_name": "Hostile Test"},
    )
    assert reply.status == 201, reply.body
    return reply.json()["id"], username


def login(
    client: Client, secrets: Secrets, username: str, password: str = PASSWORD, scope: str | None = None
) -> dict[str, Any]:
    body = {"username": username, "password": password}
    if scope is not None:
        body["scope"] = scope
    reply = client.post("/auth/login", json_body=body)
    assert reply.status == 200, reply.body
    tokens = reply.json()
    secrets.add(tokens["access_token"], tokens.get("refresh_token"))
    return tokens


def client_credentials(client: Client, client_id: str, secret: str, form: str = "") -> Reply:
    """POST /auth/token for a machine client (HTTP Basic); `form` adds fields such as scope."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post(
        "/auth/token",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        body="grant_type=client_credentials" + form,
    )


def new_user(client: Client, secrets: Secrets, *, scope: str | None = None) -> User:
    user_id, username = register(client, secrets)
    tokens = login(client, secrets, username, scope=scope)
    return User(user_id, username, PASSWORD, tokens["access_token"], tokens["refresh_token"], tokens["scope"])


def auth_command(stack: Stack, *args: str) -> str:
    """Run an operator command of the auth service against the stack's auth database."""
    env = dict(stack.process("auth-1").env)
    result = subprocess.run(
        [sys.executable, "-m", "services.auth", *args],
        env={**_base_env(), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}


# -- checks every refused attack passes -------------------------------------------------


def assert_refused(
    reply: Reply,
    status: int | tuple[int, ...] | None = None,
    *,
    secrets: Secrets | None = None,
    sent: Iterable[str] = (),
) -> dict[str, Any]:
    """A clear 4xx problem+json naming its request id, with nothing leaked."""
    allowed = (status,) if isinstance(status, int) else status
    assert 400 <= reply.status < 500, (reply.status, reply.body[:500])
    if allowed is not None:
        assert reply.status in allowed, (reply.status, reply.body[:500])
    assert reply.content_type == PROBLEM_TYPE, (reply.content_type, reply.body[:500])
    problem = reply.json()
    assert problem["status"] == reply.status
    assert problem["type"] and problem["title"]
    assert problem["request_id"] == reply.headers["X-Request-Id"]
    assert_no_leak(reply, secrets=secrets, sent=sent)
    return problem


def assert_no_leak(reply: Reply, *, secrets: Secrets | None = None, sent: Iterable[str] = ()) -> None:
    text = reply.body.decode("utf-8", "replace") + "\n" + reply.header_text()
    for marker in LEAK_MARKERS:
        assert marker not in text, f"answer leaks {marker!r}: {text[:800]}"
    if secrets is not None:
        assert not secrets.found_in(text), f"answer leaks {secrets.found_in(text)}"
    for value in sent:  # a token or password the attack itself sent is never echoed
        assert value not in text, f"answer echoes what was sent: {_redact(value)}"


def assert_token_refused(reply: Reply, token: str, secrets: Secrets | None = None) -> dict[str, Any]:
    problem = assert_refused(reply, 401, secrets=secrets, sent=[token])
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    return problem


# -- raw HTTP/1.1 over asyncio streams --------------------------------------------------


@dataclasses.dataclass
class RawReply:
    status: int
    head: str
    body: bytes
    # Whether the server closed the connection after answering; None when the caller did
    # not ask (probing costs up to 2 s when the connection stays open).
    closed: bool | None = None

    @property
    def content_type(self) -> str:
        for line in self.head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                return value.split(";")[0].strip().lower()
        return ""

    def header(self, wanted: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == wanted.lower():
                return value.strip()
        return None


async def raw_exchange(
    host: str,
    port: int,
    data: bytes,
    *,
    timeout: float = 20.0,
    trickle: Iterable[tuple[float, bytes]] = (),
    probe_close: bool = True,
) -> RawReply:
    """Send bytes as they are, then each trickled piece after its delay until the answer
    comes; return the answer, and (with `probe_close`) whether the server then closed the
    connection: it is given 2 s to."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(timeout):
            writer.write(data)
            await writer.drain()
            answer = asyncio.ensure_future(_read_response(reader))
            try:
                for delay, piece in trickle:
                    done, _ = await asyncio.wait({answer}, timeout=delay)
                    if done or writer.is_closing():
                        break
                    try:
                        writer.write(piece)
                        await writer.drain()
                    except ConnectionError:
                        break
                reply = await answer
            finally:
                answer.cancel()
            if probe_close:
                try:
                    reply.closed = await asyncio.wait_for(reader.read(1), 2.0) == b""
                except (TimeoutError, ConnectionError):
                    reply.closed = False
            return reply
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def _read_response(reader: asyncio.StreamReader) -> RawReply:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = None
    chunked = False
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if length is not None:
        body = await reader.readexactly(length)
    elif chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.read()
    return RawReply(status, head, body)


def assert_raw_refused(reply: RawReply, statuses: tuple[int, ...]) -> dict[str, Any] | None:
    """A 4xx from the gateway: problem+json with its request id, no leak."""
    assert reply.status in statuses, (reply.status, reply.head, reply.body[:300])
    text = reply.body.decode("utf-8", "replace") + reply.head
    for marker in LEAK_MARKERS:
        assert marker not in text, text[:800]
    assert reply.content_type == PROBLEM_TYPE, (reply.head, reply.body[:300])
    problem = json.loads(reply.body)
    assert problem["status"] == reply.status
    assert problem["request_id"] == reply.header("X-Request-Id")
    return problem


# -- tokens -----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses PEM keys as HMAC secrets, attackers do not)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def rs256(header: dict[str, Any], claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    extra = {k: v for k, v in header.items() if k not in ("alg",)}
    return jwt.encode(claims, key, algorithm="RS256", headers=extra)


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64url_json(header)}.{b64url_json(claims)}.{signature}"


# -- a server that must never be called --------------------------------------------------


class Tripwire:
    """A local HTTP server an attack points the gateway at; it records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        tripwire = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                tripwire.requests.append(f"{self.command} {self.path}")
                body = json.dumps({"keys": tripwire.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.keys: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def authority(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"


@contextmanager
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    wire.thread.start()
    try:
        yield wire
    finally:
        wire.server.shutdown()
        wire.server.server_close()
        wire.thread.join(5)


def read_text(paths: Iterable[Path]) -> str:
    return "\n".join(path.read_text(errors="replace") for path in paths)
