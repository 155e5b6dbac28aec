"""Request validation against a service's OpenAPI 3.1 document, the one source of its schemas.

OpenAPI 3.1 schemas are JSON Schema 2020-12, so the document that clients and fuzzers read
is also what every request body is checked against.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from common.errors import Problem

_DOCUMENT_URI = "urn:passgate:openapi"
MAX_ERRORS_REPORTED = 10


class OpenApiDocument:
    """A loaded OpenAPI document with a validator per component schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._validators: dict[str, Draft202012Validator] = {}
        self._fast: dict[str, jsonschema_rs.Validator | None] = {}

    @classmethod
    def load(cls, path: Path) -> OpenApiDocument:
        with path.open(encoding="utf-8") as handle:
            return cls(yaml.safe_load(handle))

    @cached_property
    def _registry(self) -> Registry:
        resource = DRAFT202012.create_resource(self.document)
        return Registry().with_resource(_DOCUMENT_URI, resource)

    def _inlined(self, schema_name: str) -> Any:
        schemas = self.document.get("components", {}).get("schemas", {})
        if schema_name not in schemas:
            raise KeyError(f"no component schema named {schema_name!r}")
        return _inline_refs(schemas[schema_name], schemas, (schema_name,))

    def validator(self, schema_name: str) -> Draft202012Validator:
        """The reference validator (jsonschema): its verdict and messages are the answer."""
        if schema_name not in self._validators:
            self._validators[schema_name] = Draft202012Validator(
                self._inlined(schema_name),
                registry=self._registry,
                format_checker=FormatChecker(),
            )
        return self._validators[schema_name]

    def _accepts_quickly(self, schema_name: str, value: Any) -> bool:
        """True when jsonschema-rs finds `value` valid: then the request goes on at once.

        jsonschema validated an order body in about 200 us, jsonschema-rs in about 3 us.
        Its False, or any failure to take the value (an integer beyond 64 bits, a lone
        surrogate), only sends the value to the reference validator, whose verdict and
        messages are the answer; jsonschema-rs is only ever stricter in what it accepts
        (tests/common/test_validation.py checks that on generated values).
        """
        if schema_name not in self._fast:
            try:
                self._fast[schema_name] = jsonschema_rs.Draft202012Validator(
                    self._inlined(schema_name), validate_formats=True
                )
            except (ValueError, jsonschema_rs.ReferencingError):  # e.g. a cyclic reference
                self._fast[schema_name] = None
        fast = self._fast[schema_name]
        if fast is None:
            return False
        try:
            return bool(fast.is_valid(value))
        except (ValueError, OverflowError, UnicodeError):
            return False

    def check(self, schema_name: str, value: Any) -> None:
        """Raise a 400 problem listing what is wrong with `value`, if anything."""
        if self._accepts_quickly(schema_name, value):
            return
        errors = sorted(
            self.validator(schema_name).iter_errors(value), key=lambda e: list(e.absolute_path)
        )
        if errors:
            raise invalid_request(
                [{"pointer": _pointer(e.absolute_path), "detail": _message(e)} for e in errors]
            )


_LOCAL_REF = "#/components/schemas/"
# Keywords whose values are data, not schemas: a {"$ref": ...} in them is left as it is.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "example"})


def _inline_refs(node: Any, schemas: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """The schema with each plain reference to a component schema replaced by that schema.

    Resolving a $ref through the registry on every validation was half of the validation
    time of a request body (`referencing` lookups on each item of an order); inlined, the
    references cost nothing per call. Error messages and instance paths are unchanged.
    A reference that is part of a cycle, or has sibling keywords, stays a reference,
    made absolute so that the registry resolves it.
    """
    if isinstance(node, list):
        return [_inline_refs(value, schemas, seen) for value in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_LOCAL_REF):
        name = ref[len(_LOCAL_REF) :]
        if len(node) == 1 and name in schemas and name not in seen:
            return _inline_refs(schemas[name], schemas, (*seen, name))
        node = {**node, "$ref": _DOCUMENT_URI + ref}
    return {
        key: value if key in _DATA_KEYWORDS else _inline_refs(value, schemas, seen)
        for key, value in node.items()
    }


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(part) for part in path) if path else ""


def _message(error: Any) -> str:
    # jsonschema quotes the offending value; cap it so a huge input is not echoed back.
    message = str(error.message)
    return message if len(message) <= 200 else message[:197] + "..."


def invalid_request(errors: list[dict[str, str]]) -> Problem:
    errors = errors[:MAX_ERRORS_REPORTED]
    summary = "; ".join(f"{e['pointer'] or 'body'}: {e['detail']}" for e in errors)
    return Problem(400, summary, kind="invalid-request", extensions={"errors": errors})


async def read_json(request: web.Request, document: OpenApiDocument, schema_name: str) -> Any:
    """Read the body as JSON and validate it; 415, 400 or 413 problems otherwise."""
    if request.content_type != "application/json":
        raise Problem(415, "the body must be application/json", kind="unsupported-media-type")
    raw = await request.read()  # bounded by the app's client_max_size (413 beyond it)
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        _check_storable(value)
    except UnicodeError:
        raise invalid_request([{"pointer": "", "detail": "the body is not UTF-8"}]) from None
    except RecursionError:  # nesting deeper than the parser's recursion limit
        raise invalid_request([{"pointer": "", "detail": "the JSON is nested too deeply"}]) from None
    except ValueError as error:  # JSONDecodeError, and integers over Python's digit limit
        detail = f"malformed JSON: {error}" if isinstance(error, json.JSONDecodeError) else str(error)
        raise invalid_request([{"pointer": "", "detail": detail[:200]}]) from None
    document.check(schema_name, value)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_storable(value: Any) -> None:
    """Refuse what no database stores faithfully: lone surrogates and NUL characters."""
    text = json.dumps(value, ensure_ascii=False)
    text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate such as \ud800
    if "\\u0000" in text or "\x00" in text:
        raise ValueError("NUL characters are not accepted")
