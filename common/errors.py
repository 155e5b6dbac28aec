"""Errors as RFC 9457 problem details, the one error format of every Passgate process.

Hierarchy:
    Problem                 raised by handlers and middlewares; rendered as-is
    aiohttp HTTPException   (404, 405, 413 ... raised by aiohttp itself) re-rendered as a Problem
    anything else           logged once, answered as a bare 500 that reveals nothing
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

from common.context import request_id_var, trace_id_var

_LOGGER = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:passgate:problem:"


class Problem(Exception):
    """An error answer: status, a short title, a human detail, and optional extensions."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title or str(status))
        self.status = status
        self.title = title or _phrase(status)
        self.detail = detail
        self.kind = kind
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def to_response(self) -> web.Response:
        body: dict[str, Any] = {
            "type": f"{PROBLEM_TYPE_PREFIX}{self.kind}" if self.kind else "about:blank",
            "title": self.title,
            "status": self.status,
        }
        # RFC 9457 makes detail optional; the contract (API.md) puts it on every error.
        body["detail"] = self.detail or self.title
        body.update(self.extensions)
        body["request_id"] = request_id_var.get()
        body["trace_id"] = trace_id_var.get()
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _bearer_challenge(error: str | None, description: str | None, scope: str | None) -> str:
    # RFC 6750 section 3: auth-param values are quoted strings; keep quotes out of them.
    params = {"realm": "passgate", "error": error, "error_description": description, "scope": scope}
    return "Bearer " + ", ".join(
        '{}="{}"'.format(name, value.replace('"', "'")) for name, value in params.items() if value
    )


def unauthorized(detail: str, *, token_presented: bool = True, reason: str | None = None) -> Problem:
    """401 per RFC 6750 section 3.1: invalid_token only when a token was presented."""
    error = "invalid_token" if token_presented else None
    challenge = _bearer_challenge(error, detail if token_presented else None, None)
    extensions = {"error": error} if error else {}
    if reason:
        extensions["reason"] = reason
    return Problem(
        401,
        detail,
        kind="invalid-token" if token_presented else "missing-token",
        headers={"WWW-Authenticate": challenge},
        extensions=extensions,
    )


def insufficient_scope(required: str) -> Problem:
    """403 per RFC 6750 section 3.1, naming the scope the route needs."""
    return Problem(
        403,
        f"this request needs the scope: {required}",
        kind="insufficient-scope",
        headers={
            "WWW-Authenticate": _bearer_challenge(
                "insufficient_scope", "the token lacks a required scope", required
            )
        },
        extensions={"error": "insufficient_scope", "required_scope": required},
    )


def too_many_requests(retry_after: float, detail: str = "too many requests, slow down") -> Problem:
    seconds = max(1, int(retry_after + 0.999))
    return Problem(
        429,
        detail,
        kind="rate-limited",
        headers={"Retry-After": str(seconds)},
        extensions={"retry_after": seconds},
    )


def error_response(request: web.Request, error: Exception) -> web.Response:
    """Any failure as problem+json; never a traceback. Redirects (HTTPException below 400)
    are not failures: the caller re-raises those."""
    if isinstance(error, Problem):
        return error.to_response()
    if isinstance(error, web.HTTPException):
        headers = {k: v for k, v in error.headers.items() if k.lower() in _KEPT_HEADERS}
        return Problem(error.status, _http_exception_detail(request, error), headers=headers).to_response()
    _LOGGER.error("unhandled error in %s %s", request.method, request.path, exc_info=error)
    return Problem(500, "an unexpected error occurred").to_response()


def _http_exception_detail(request: web.Request, error: web.HTTPException) -> str:
    """aiohttp's own text when it says more than the status line, else a sentence for the
    statuses its router and body reader raise, so every problem has a detail."""
    if error.text and error.text != f"{error.status}: {error.reason}":
        return error.text
    if error.status == 404:
        return f"no route matches {request.path!r}"
    if error.status == 405:
        allowed = error.headers.get("Allow", "")
        return f"{request.method} is not allowed here; allowed: {allowed}"
    if error.status == 413:
        return "the request body is too large"
    return error.reason


# aiohttp's own errors carry these meaningful headers (405 Allow, 413 none, 429 Retry-After).
_KEPT_HEADERS = {"allow", "retry-after", "www-authenticate"}
