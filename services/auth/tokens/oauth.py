"""RFC 6749 token-endpoint plumbing: form parsing, HTTP Basic client auth, section 5.2 errors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from common.validation import OpenApiDocument

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# RFC 6749 section 5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
KNOWN_PARAMETERS = frozenset({"grant_type", "scope", "refresh_token"})
INVALID_REFRESH_GRANT = "the refresh token is invalid, expired or revoked"


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error: {"error", "error_description"} JSON."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def to_response(self) -> web.Response:
        headers = dict(NO_STORE)
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


async def read_form(request: web.Request, document: OpenApiDocument) -> dict[str, str]:
    """The form parameters, each at most once (section 3.2), checked against TokenForm."""
    if request.content_type != FORM_CONTENT_TYPE:
        raise OAuthError("invalid_request", f"the body must be {FORM_CONTENT_TYPE}")
    form = await request.post()
    values: dict[str, Any] = {}
    for name in KNOWN_PARAMETERS & set(form.keys()):  # section 3.2: ignore unknown ones
        items = form.getall(name)
        if len(items) != 1 or not isinstance(items[0], str):
            raise OAuthError("invalid_request", f"parameter {name} must appear once, as text")
        values[name] = items[0]
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
    return values


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
