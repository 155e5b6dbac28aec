"""Schemathesis against the gateway's public OpenAPI document (GET /openapi.json), on a
stack of its own: every operation of every service, with an admin's valid token and with
none, bounded and reproducible.

What must hold for every generated request: no 5xx, and the answer conforms to the
document (its status code is documented, its content type and body match the schema, its
documented headers are there), and invalid input is refused with a 4xx.

Bounds: FUZZ_SEED fixed and derandomized generation, at most MAX_EXAMPLES examples per
operation in the fuzzing phase plus the coverage phase's boundary cases, no shrinking (a
failure is reported with the case that failed, as generated).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator

import pytest
import schemathesis
from schemathesis.checks import load_all_checks
from schemathesis.core.failures import FailureGroup, as_reported_failure
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.hypothesis.builder import (
    InvalidHeadersExampleMark,
    MissingPathParameters,
    UnserializablePayloadMark,
)
from schemathesis.generation.hypothesis.reporting import ignore_hypothesis_output
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.python._constants.orchestrator import make_constants_value_source

from devstack.stack import Stack
from gateway.openapi import build_public_document, load_documents, service_documents
from common.scopes import default_scope_policy
from gateway.routes import load_routes
from tests.support.hostile import Client, Secrets, auth_command, hostile_config, login, register
from tests.support.stack import running_stack
from tests.support.stack_settings import PACKAGED_ROUTES

pytestmark = pytest.mark.e2e

FUZZ_SEED = 20261127
MAX_EXAMPLES = 6
CONFIG = f"""
seed = {FUZZ_SEED}
request-timeout = 15

[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true
no-shrink = true

[phases.examples]
enabled = true
[phases.coverage]
enabled = true
[phases.fuzzing]
enabled = true
[phases.stateful]
enabled = false

[checks]
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_schema_conformance.enabled = true
response_headers_conformance.enabled = true
negative_data_rejection.enabled = true
# Valid input may still be refused for reasons no schema states (an unknown id is 404, a
# wrong password 401); stateful checks need the stateful phase.
positive_data_acceptance.enabled = false
use_after_free.enabled = false
ensure_resource_availability.enabled = false
object_level_authorization.enabled = false
"""


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(hostile_config(tmp_path_factory.mktemp("fuzz-stack"), log_level="INFO")) as stack:
        yield stack


@pytest.fixture(scope="module")
def admin_token(fuzz_stack: Stack) -> str:
    """An admin's token, so the admin routes are fuzzed all the way to their service."""
    gateway = Client(fuzz_stack.gateway_url)
    _, username = register(gateway, Secrets())
    auth_command(fuzz_stack, "set-role", username, "admin")
    return login(gateway, Secrets(), username)["access_token"]


# The document the gateway builds at start, built here the same way so that pytest can
# collect one test per operation before any stack runs; the first test checks that the
# running gateway serves exactly this. (schemathesis's fixture-based lazy loading reads a
# pytest attribute that pytest 9 no longer has.)
DOCUMENT = build_public_document(load_routes(PACKAGED_ROUTES, default_scope_policy().issuable), load_documents(service_documents()))
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_str(CONFIG))


def test_the_fuzzed_document_is_the_one_the_gateway_serves(fuzz_stack: Stack) -> None:
    reply = Client(fuzz_stack.gateway_url).get("/openapi.json")
    assert reply.status == 200 and reply.content_type == "application/json"
    assert reply.json() == json.loads(json.dumps(DOCUMENT))


# One test per operation and per token, built when it first runs rather than at collection.
# schemathesis's own `@schema.parametrize()` builds every operation's Hypothesis test while
# pytest collects, and building it draws the coverage phase's cases (boundary values, and
# strings for each `pattern` at the edges of its length bounds: POST /auth/register's
# display_name alone takes about half a minute), so every collection of this module paid
# for all of them, twice (once per test below), and under pytest-xdist once per worker. Built here with the same schemathesis function,
# the same configuration, seed and phases, each operation's test is the same one the plugin
# would build (examples, coverage and fuzzing, the same checks); it is built once, for the
# first of its two tests to run, and the second runs the same cases with other headers (the
# cases do not depend on the token: it is sent by call_and_validate). The parameters are
# the operations' labels, so each test's id names its operation (the plugin's items all
# shared one node id under pytest 9, which a distributed run cannot tell apart).
OPERATIONS = {result.ok().label: result.ok() for result in schema.get_all_operations()}


@functools.cache
def operation_test(label: str) -> Callable[..., None]:
    load_all_checks()

    def exercise(case: schemathesis.Case, call: Callable[[schemathesis.Case], None]) -> None:
        call(case)

    test = build_operation_test(
        config=schema.config,
        operation=OPERATIONS[label],
        test_func=exercise,
        given_kwargs={},
        feedback=FeedbackSources(constants_value_source=make_constants_value_source(schema)),
    )
    # What the plugin would report after the run (an operation partly left untested) is
    # refused outright here: the document has no such operation today.
    for mark in (MissingPathParameters, UnserializablePayloadMark, InvalidHeadersExampleMark):
        assert not mark.is_set(test), f"{label}: {mark.attr_name}: {mark.get(test)}"
    return test


def run_operation(label: str, call: Callable[[schemathesis.Case], None]) -> None:
    test = operation_test(label)
    with ignore_hypothesis_output():
        try:
            test(call=call)
        except FailureGroup as failures:
            raise as_reported_failure(failures) from None


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_with_a_valid_token(operation: str, fuzz_stack: Stack, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    run_operation(operation, lambda case: case.call_and_validate(base_url=fuzz_stack.gateway_url, headers=headers))


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_without_a_token(operation: str, fuzz_stack: Stack) -> None:
    run_operation(operation, lambda case: case.call_and_validate(base_url=fuzz_stack.gateway_url))
