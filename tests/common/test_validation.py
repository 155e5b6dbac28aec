"""Request validation: the fast first pass never accepts what the reference validator rejects,
and inlined references validate exactly as references resolved through the registry.

Both are properties over every component schema of the orders and users documents, checked
on values generated from each schema's own shape (near-valid values, the boundaries, wrong
types) and on arbitrary JSON.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from common.errors import Problem
from common.validation import _DOCUMENT_URI, OpenApiDocument
from services.orders.app import OPENAPI_PATH as ORDERS_OPENAPI
from services.users.app import OPENAPI_PATH as USERS_OPENAPI

DOCUMENTS = {
    "orders": OpenApiDocument.load(ORDERS_OPENAPI),
    "users": OpenApiDocument.load(USERS_OPENAPI),
}
SCHEMAS = [
    (service, name)
    for service, document in DOCUMENTS.items()
    for name in document.document["components"]["schemas"]
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def values_for(
    schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0
) -> st.SearchStrategy[Any]:
    """Values shaped like `schema`: mostly near-valid, with wrong types and boundaries mixed in."""
    if "$ref" in schema:
        return values_for(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas, depth)
    if "oneOf" in schema:
        return st.one_of([values_for(s, schemas, depth) for s in schema["oneOf"]])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    options: list[st.SearchStrategy[Any]] = []
    for kind in types:
        if kind == "null":
            options.append(st.none())
        elif kind == "string":
            options.append(_strings(schema))
        elif kind == "integer":
            low, high = schema.get("minimum", -(2**70)), schema.get("maximum", 2**70)
            options.append(
                st.integers(low - 2, high + 2)
                | st.sampled_from([low, high, low - 1, high + 1, 2**63, -(2**63) - 1, 10**30])
                | st.floats(low - 2, high + 2).map(float)
                | st.booleans()
            )
        elif kind == "array" and depth < 4:
            item = values_for(schema.get("items", {}), schemas, depth + 1)
            most = min(schema.get("maxItems", 5) + 1, 6)
            options.append(st.lists(item, max_size=most))
        elif kind == "object" and depth < 4:
            properties = schema.get("properties", {})
            options.append(
                st.fixed_dictionaries(
                    {},
                    optional={
                        **{
                            name: values_for(s, schemas, depth + 1)
                            for name, s in properties.items()
                        },
                        "unexpected": json_values,
                    },
                )
            )
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    options.append(json_values)
    return st.one_of(options)


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    options = [st.text(max_size=schema.get("maxLength", 40) + 2)]
    if schema.get("format") == "uuid":
        uuids = st.uuids().map(str)
        options += [
            uuids,
            uuids.map(str.upper),
            uuids.map(lambda u: u.replace("-", "_", 1)),
            uuids.map(lambda u: u[:-1] + "g"),
            uuids.map(lambda u: u + "\n"),
        ]
    if "pattern" in schema:
        options.append(st.from_regex(schema["pattern"], fullmatch=False))
        options.append(st.from_regex(schema["pattern"], fullmatch=True).map(lambda s: s + "\n"))
    return st.one_of(options)


def reference_errors(document: OpenApiDocument, name: str, value: Any) -> list[tuple[str, str]]:
    errors = Draft202012Validator(
        {"$ref": f"{_DOCUMENT_URI}#/components/schemas/{name}"},
        registry=document._registry,
        format_checker=FormatChecker(),
    ).iter_errors(value)
    return sorted((str(list(e.absolute_path)), e.message) for e in errors)


@pytest.mark.parametrize(("service", "name"), SCHEMAS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_check_answers_as_the_reference_validator(
    service: str, name: str, data: st.DataObject
) -> None:
    document = DOCUMENTS[service]
    schemas = document.document["components"]["schemas"]
    value = data.draw(values_for(schemas[name], schemas))
    expected = reference_errors(document, name, value)
    # Inlined references: the same errors, at the same places, as resolved ones.
    inlined = sorted(
        (str(list(e.absolute_path)), e.message) for e in document.validator(name).iter_errors(value)
    )
    assert inlined == expected
    # The fast pass never lets through what the reference rejects, and check() says the same.
    if expected:
        assert not document._accepts_quickly(name, value)
        with pytest.raises(Problem) as raised:
            document.check(name, value)
        assert raised.value.status == 400
    else:
        document.check(name, value)


def test_a_cyclic_reference_stays_a_reference() -> None:
    document = OpenApiDocument(
        {
            "components": {
                "schemas": {
                    "Node": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "next": {"$ref": "#/components/schemas/Node"},
                            "n": {"type": "integer"},
                        },
                    }
                }
            }
        }
    )
    document.check("Node", {"next": {"next": {"n": 1}}})
    with pytest.raises(Problem) as raised:
        document.check("Node", {"next": {"next": {"n": "one"}}})
    assert raised.value.extensions["errors"] == [
        {"pointer": "/next/next/n", "detail": "'one' is not of type 'integer'"}
    ]
