"""The routes file's JSON Schema (routes.schema.json): structure, ranges and defaults.

jsonschema finds every structural problem at once; this module turns each into one line
that names the route or upstream and the field, as the rest of the loader does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).with_name("routes.schema.json")

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


@cache
def schema() -> dict[str, Any]:
    with SCHEMA_PATH.open(encoding="utf-8") as handle:
        return json.load(handle)


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def default(definition: str, field: str) -> Any:
    """The default the schema states for `field` of `$defs/<definition>`."""
    return _resolve(schema()["$defs"][definition]["properties"][field])["default"]


def problems(document: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every structural problem as (path in the document, message)."""
    found = []
    for error in sorted(
        _validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    ):
        found.extend(_describe(error))
    return found


def _describe(error: ValidationError) -> Iterator[tuple[tuple[Any, ...], str]]:
    path = tuple(error.absolute_path)
    subschema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind in ("oneOf", "anyOf"):
        # A value of the type one branch takes is explained by that branch's own errors:
        # rate_limit: {requests: 0} is about requests, not about "off".
        for index, branch in enumerate(error.validator_value):
            if _takes_type(_resolve(branch), _json_type(error.instance)):
                inner = [e for e in error.context or () if e.relative_schema_path[0] == index]
                if inner:
                    for sub in inner:
                        yield from _describe(sub)
                    return
        yield path, f"must be {_description(subschema)}, got {error.instance!r}"
    elif kind == "additionalProperties":
        known = sorted(subschema.get("properties", {}))
        unknown = sorted(str(key) for key in error.instance if key not in known)
        yield path, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(known)}"
    elif kind == "required":
        missing = str(error.message).split("'")[1]
        yield (
            (*path, missing),
            f"required: {_description(subschema.get('properties', {}).get(missing, {}))}",
        )
    elif subschema.get("type") in ("number", "integer") and kind in ("type", "minimum", "maximum"):
        noun = "an integer" if subschema["type"] == "integer" else "a number"
        yield (
            path,
            (
                f"must be {noun} from {subschema['minimum']:g} to {subschema['maximum']:g}, "
                f"got {error.instance!r}"
            ),
        )
    elif kind == "enum":
        choices = " or ".join(repr(choice) for choice in error.validator_value)
        yield path, f"must be {choices}, got {error.instance!r}"
    elif kind in ("minItems", "minProperties"):
        yield path, f"must not be empty: {_description(subschema)}"
    elif kind == "maxProperties":
        yield path, f"must be {_description(subschema)}, got {error.instance!r}"
    elif kind == "pattern":
        yield path, f"{error.instance!r}: {_description(subschema)}"
    elif kind == "type":
        expected = (
            subschema["type"]
            if isinstance(subschema["type"], str)
            else " or ".join(subschema["type"])
        )
        what = {
            "object": "a mapping",
            "array": "a list",
            "string": "a string",
            "boolean": "true or false",
            "null": "empty",
        }
        expected = " or ".join(what.get(t, t) for t in expected.split(" or "))
        yield path, f"must be {expected}, got {error.instance!r}"
    else:
        yield path, f"{error.message} ({_description(subschema)})"


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _description(subschema: dict[str, Any]) -> str:
    return str(_resolve(subschema).get("description", "see routes.schema.json"))


def _takes_type(node: dict[str, Any], json_type: str) -> bool:
    declared = node.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or ())
    return json_type in types or (json_type == "number" and "integer" in types)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return _JSON_TYPES.get(type(value), "other")
