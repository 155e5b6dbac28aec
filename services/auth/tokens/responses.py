"""The answers every token-issuing handler shares: the token body, the scope refusal."""

from __future__ import annotations

from aiohttp import web

from common.errors import Problem
from services.auth.accounts.roles import InvalidScopeError
from services.auth.tokens.minter import TokenResponse
from services.auth.tokens.oauth import NO_STORE


def invalid_scope(error: InvalidScopeError) -> Problem:
    return Problem(400, str(error), kind="invalid-scope", extensions={"error": "invalid_scope"})


def token_response(response: TokenResponse) -> web.Response:
    return web.json_response(response.to_json(), headers=NO_STORE)
