"""Per-request context: request id and trace, bound for logs and echoed to the client."""

from __future__ import annotations

import contextvars
import os
import re
import uuid

from aiohttp import web

from common.tracing import TRACE, TRACEPARENT, continue_trace

REQUEST_ID_HEADER = "X-Request-Id"

# A client's id is kept only when it is short and plain, so it cannot inject into logs.
# Declared here, where it is set, and re-exported by common.app_keys (no import circle).
REQUEST_ID = web.RequestKey("request_id", str)
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)


def choose_request_id(candidate: str | None, fallback: str | None = None) -> str:
    """The client's id when it is sane, else `fallback` (32 random hex digits) or a new one."""
    if candidate and _SANE_REQUEST_ID.match(candidate):
        return candidate
    return fallback or uuid.uuid4().hex


def bind_request_context(request: web.Request) -> None:
    """Bind the request id and trace before anything else runs or logs."""
    # One draw of random bits for the span id, a new trace id and a new request id: the
    # system calls and objects of three separate draws showed in the gateway's profile.
    random_hex = os.urandom(40).hex()
    request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER), random_hex[48:])
    trace = continue_trace(request.headers.get(TRACEPARENT), random_hex=random_hex)
    request[REQUEST_ID] = request_id
    request[TRACE] = trace
    request_id_var.set(request_id)
    trace_id_var.set(trace.trace_id)
    user_id_var.set(None)


def stamp_response_fields(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """The fields every response of every process carries, streamed ones too: its request
    id, and nothing that names the software or lets a browser second-guess the content type.

    The id is the context variable's: responses are prepared in the request's own task,
    where bind_request_context set it (None for a request refused before it ran)."""
    headers = response.headers
    request_id = request_id_var.get()
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    # aiohttp names itself and its version in Server; that helps only an attacker.
    headers.popall("Server", None)
    headers["X-Content-Type-Options"] = "nosniff"


async def echo_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare hook: stamp_response_fields."""
    stamp_response_fields(request, response)
