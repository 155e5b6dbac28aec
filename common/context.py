"""Per-request context: request id and trace, bound for logs and echoed to the client."""

from __future__ import annotations

import contextvars
import re
import uuid

from aiohttp import web

from common.keys import REQUEST_ID, TRACE
from common.tracing import TRACEPARENT, continue_trace

REQUEST_ID_HEADER = "X-Request-Id"

# A client's id is kept only when it is short and plain, so it cannot inject into logs.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)


def choose_request_id(candidate: str | None) -> str:
    if candidate and _SANE_REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


@web.middleware
async def request_context_middleware(
    request: web.Request, handler: web.RequestHandler
) -> web.StreamResponse:
    """Bind the request id and trace before anything else runs or logs."""
    request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
    trace = continue_trace(request.headers.get(TRACEPARENT))
    request[REQUEST_ID] = request_id
    request[TRACE] = trace
    request_id_var.set(request_id)
    trace_id_var.set(trace.trace_id)
    user_id_var.set(None)
    return await handler(request)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: every response, streamed ones too, names its request id."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
