"""JSON bodies validated against openapi.yaml, with errors that never quote what was sent.

common.validation's messages quote the offending value ("'hunter2' is too short"); here
every body may hold a password or a refresh token, so each error is worded from the
schema keyword that failed instead.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from jsonschema.exceptions import ValidationError

from common.errors import Problem
from common.validation import OpenApiDocument, invalid_request, read_json

# Keywords whose messages name only schema facts (property names), never submitted values.
_SAFE_KEYWORDS = frozenset({"required"})


async def read_body(request: web.Request, document: OpenApiDocument, schema_name: str) -> Any:
    try:
        return await read_json(request, document, schema_name)
    except Problem as problem:
        if problem.status != 400 or problem.kind != "invalid-request":
            raise
        try:
            value = json.loads(await request.read())  # aiohttp keeps the body read above
        except (ValueError, RecursionError):
            # A syntax error names a position, not content; nesting too deep for the parser
            # was already refused in so many words.
            raise problem from None
        errors = sorted(
            document.validator(schema_name).iter_errors(value), key=lambda e: list(e.absolute_path)
        )
        if not errors:
            raise problem from None
        raise invalid_request([_describe(error) for error in errors]) from None


def _describe(error: ValidationError) -> dict[str, str]:
    path = list(error.absolute_path)
    pointer = "/" + "/".join(str(part) for part in path) if path else ""
    if error.validator in _SAFE_KEYWORDS:
        detail = str(error.message)
    elif error.validator == "additionalProperties":
        detail = "unknown fields are not accepted"
    else:
        detail = f"must satisfy {error.validator}: {json.dumps(error.validator_value)[:100]}"
    return {"pointer": pointer, "detail": detail}
