"""RFC 6749 token-endpoint plumbing: form parsing, HTTP Basic client auth, section 5.2 errors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from common.validation import OpenApiDocument

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# RFC 6749 section 5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
KNOWN_PARAMETERS = frozenset({"grant_type", "scope", "refresh_token"})
# Section 2.3.1: a confidential client may send its credentials in the form instead.
CLIENT_PARAMETERS = frozenset({"client_id", "client_secret"})
INVALID_REFRESH_GRANT = "the refresh token is invalid, expired or revoked"


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error: {"error", "error_description"} JSON."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def to_response(self) -> web.Response:
        headers = {**NO_STORE, **self.headers}
        if self.status == 401:
            # Section 5.2: invalid_client after HTTP Basic gets a Basic challenge.
            headers["WWW-Authenticate"] = 'Basic realm="passgate", charset="UTF-8"'
        body = {"error": self.error, "error_description": self.description}
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers=headers,
        )


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    return OAuthError("invalid_client", description, status=401)


async def form_parameters(request: web.Request, known: frozenset[str]) -> dict[str, str]:
    """The `known` form parameters, each at most once (section 3.2); others are ignored."""
    if request.content_type != FORM_CONTENT_TYPE:
        raise OAuthError("invalid_request", f"the body must be {FORM_CONTENT_TYPE}")
    # Appendix B: the form is UTF-8. Decoded here rather than by request.post(), which
    # decodes with whatever charset the client names (an unknown one raised a 500).
    if (request.charset or "utf-8").lower() != "utf-8":
        raise OAuthError("invalid_request", "the form must be UTF-8")
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form must be UTF-8") from None
    seen: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in known:  # section 3.2: ignore unknown ones
            seen.setdefault(name, []).append(value)
    values: dict[str, str] = {}
    for name, items in seen.items():
        if len(items) != 1:
            raise OAuthError("invalid_request", f"parameter {name} must appear once")
        values[name] = items[0]
    return values


async def read_form(request: web.Request, document: OpenApiDocument) -> dict[str, str]:
    """The token endpoint's form parameters, checked against TokenForm, and the client's
    own (`client_id`, `client_secret`), which tokens/client_auth.py checks."""
    form = await form_parameters(request, KNOWN_PARAMETERS | CLIENT_PARAMETERS)
    values: dict[str, Any] = {k: v for k, v in form.items() if k in KNOWN_PARAMETERS}
    if values.get("refresh_token") == "":
        # Section 3.2: a parameter sent without a value is treated as omitted, so an empty
        # grant is a missing one (invalid_request), not an invalid one (invalid_grant).
        del values["refresh_token"]
    grant_type = values.get("grant_type")
    if grant_type is not None and grant_type not in ("client_credentials", "refresh_token"):
        raise OAuthError(
            "unsupported_grant_type", "grant_type must be client_credentials or refresh_token"
        )
    errors = list(document.validator("TokenForm").iter_errors(values))
    if any(list(error.absolute_path) == ["scope"] for error in errors):
        raise OAuthError("invalid_scope", "scope is malformed")
    if grant_type == "refresh_token" and any(
        list(error.absolute_path) == ["refresh_token"] for error in errors
    ):
        # Present but no refresh token of ours could look like it (an access token, which is
        # longer, say): section 5.2 calls that an invalid grant, not a malformed request.
        raise OAuthError("invalid_grant", INVALID_REFRESH_GRANT)
    if errors:
        raise OAuthError(
            "invalid_request", "grant_type, or refresh_token for its grant, is missing or malformed"
        )
    return values | {k: v for k, v in form.items() if k in CLIENT_PARAMETERS}


def basic_credentials(request: web.Request) -> tuple[str, str]:
    """Client id and secret from HTTP Basic (RFC 6749 section 2.3.1: form-urlencoded first)."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise invalid_client("client authentication by HTTP Basic is required")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("malformed HTTP Basic credentials") from None
    client_id, separator, secret = decoded.partition(":")
    if not separator or not client_id or not secret:
        raise invalid_client("malformed HTTP Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)
