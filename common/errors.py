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
        if self.detail:
            body["detail"] = self.detail
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


@web.middleware
async def error_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Render every failure as problem+json; never let a traceback reach a client."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors pass through untouched
        headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
        detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
        return Problem(exc.status, detail, headers=headers).to_response()
    except Exception:
        _LOGGER.exception("unhandled error in %s %s", request.method, request.path)
        return Problem(500, "an unexpected error occurred").to_response()


# aiohttp's own errors carry these meaningful headers (405 Allow, 413 none, 429 Retry-After).
_KEPT_HEADERS = {"allow", "retry-after", "www-authenticate"}
