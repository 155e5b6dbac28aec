"""The routes file's JSON Schema: valid, the one place defaults are stated, and together
with the loader's own checks, an answer for any document (a table or clear problems)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from gateway.routes import SCHEMA_PATH, RouteConfig, RoutesError, UpstreamConfig, parse_routes

PROJECT = Path(__file__).resolve().parents[2]
PACKAGED = yaml.safe_load((PROJECT / "gateway" / "routes.yaml").read_text())
SCHEMA = json.loads(SCHEMA_PATH.read_text())
ISSUABLE = frozenset({"orders:read"})
MINIMAL = {
    "upstreams": {"orders": {"replicas": ["http://127.0.0.1:8083"]}},
    "routes": [{"name": "orders", "path": "/orders", "methods": ["GET"], "upstream": "orders"}],
}


def test_the_schema_is_valid_json_schema_and_accepts_the_packaged_file() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert list(Draft202012Validator(SCHEMA).iter_errors(PACKAGED)) == []


def test_defaults_are_stated_once_in_the_schema() -> None:
    """The model classes hold no defaults; a bare route gets exactly the schema's."""
    for model in (RouteConfig, UpstreamConfig):
        for field in dataclasses.fields(model):
            assert field.default is dataclasses.MISSING, (
                f"{model.__name__}.{field.name} has a default"
            )
    table = parse_routes(MINIMAL, source="t", scopes=ISSUABLE, overrides={})
    route, upstream = table.routes[0], table.upstreams["orders"]
    definitions = SCHEMA["$defs"]
    assert route.timeout == definitions["timeout"]["default"]
    assert route.max_body_bytes == definitions["maxBodyBytes"]["default"]
    assert route.rate_limit is None and definitions["rateLimit"]["default"] == "off"
    assert route.public is (definitions["route"]["properties"]["auth"]["default"] == "public")
    for key, spec in definitions["upstream"]["properties"].items():
        if key != "replicas":  # the only upstream field without a default
            assert getattr(upstream, key) == spec["default"]


def test_file_defaults_apply_between_the_schema_and_the_route() -> None:
    document = {**MINIMAL, "defaults": {"timeout": 3, "rate_limit": {"requests": 5}}}
    document["routes"] = [
        *MINIMAL["routes"],
        {**MINIMAL["routes"][0], "name": "b", "path": "/b", "timeout": 1},
    ]
    first, second = parse_routes(document, source="t", scopes=ISSUABLE, overrides={}).routes
    assert (first.timeout, second.timeout) == (3.0, 1.0)
    assert first.rate_limit is not None
    # per defaults to the schema's 1 second, burst to requests.
    assert (first.rate_limit.per, first.rate_limit.burst) == (
        SCHEMA["$defs"]["tokenBucket"]["properties"]["per"]["default"],
        5,
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Every field the schema knows, and one it does not.
ROUTE_FIELDS = [*sorted(SCHEMA["$defs"]["route"]["properties"]), "colour"]
UPSTREAM_FIELDS = sorted(SCHEMA["$defs"]["upstream"]["properties"])


@st.composite
def damaged_documents(draw: st.DrawFn) -> Any:
    """The packaged file with a few fields anywhere set to arbitrary JSON values."""
    document = copy.deepcopy(PACKAGED)
    for _ in range(draw(st.integers(1, 3))):
        value = draw(json_values)
        place = draw(st.sampled_from(["route", "upstream", "defaults", "top", "rate_limit"]))
        if place == "route":
            route = (
                draw(st.sampled_from(document["routes"]))
                if isinstance(document.get("routes"), list) and document["routes"]
                else None
            )
            if isinstance(route, dict):
                route[draw(st.sampled_from(ROUTE_FIELDS))] = value
        elif (
            place == "upstream"
            and isinstance(document.get("upstreams"), dict)
            and document["upstreams"]
        ):
            spec = document["upstreams"][draw(st.sampled_from(sorted(document["upstreams"])))]
            if isinstance(spec, dict):
                spec[draw(st.sampled_from(UPSTREAM_FIELDS))] = value
        elif place == "defaults":
            kept = document.get("defaults") if isinstance(document.get("defaults"), dict) else {}
            document["defaults"] = {
                **kept,
                draw(st.sampled_from(["timeout", "max_body_bytes", "rate_limit"])): value,
            }
        elif place == "rate_limit":
            document["defaults"] = {
                "rate_limit": {draw(st.sampled_from(["requests", "per", "burst"])): value}
            }
        else:
            document[
                draw(st.sampled_from(["defaults", "upstreams", "routes", "extra"]))
            ] = value
    return document


@settings(max_examples=300, deadline=None)
@given(document=damaged_documents())
def test_any_document_gets_a_table_or_clear_problems(document: Any) -> None:
    """Never a TypeError, KeyError or traceback: a table, or problems that each name where."""
    try:
        table = parse_routes(document, source="routes.yaml", scopes=ISSUABLE, overrides={})
    except RoutesError as error:
        assert error.problems
        for problem in error.problems:
            assert isinstance(problem, str) and ": " in problem
            assert problem.split(":", 1)[0].split(" ")[0].split(".")[0].split("[")[0] in (
                "file",
                "scopes",
                "defaults",
                "upstreams",
                "routes",
                "PASSGATE_UPSTREAM_ORDERS",
            ), problem
    else:
        assert table.routes and table.upstreams
        assert list(Draft202012Validator(SCHEMA).iter_errors(document)) == []


@settings(max_examples=100, deadline=None)
@given(document=damaged_documents())
def test_the_loader_refuses_everything_the_schema_refuses(document: Any) -> None:
    if list(Draft202012Validator(SCHEMA).iter_errors(document)):
        try:
            parse_routes(document, source="routes.yaml", scopes=ISSUABLE, overrides={})
        except RoutesError:
            return
        raise AssertionError("the schema refuses this document but the loader built a table")
