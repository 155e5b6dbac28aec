"""Spans exported over OTLP by the four real processes, as a collector receives them.

The stack (conftest) runs with the standard OTEL_* variables pointing at a real OTLP/HTTP
receiver (tests/support/otlp_receiver), which decodes the protobuf payloads. One trace
crosses gateway, backend and database; every span follows the semantic conventions the
platform's tools read; and no span of a whole session carries a secret.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest

from devstack.stack import Stack
from tests.support.http import bearer
from tests.support.observability import Traffic, http
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e


def new_traceparent(flags: str = "01") -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-{flags}"


def one(spans: list[ReceivedSpan], what: str, **match: str) -> ReceivedSpan:
    found = [span for span in spans if all(getattr(span, k) == v for k, v in match.items())]
    assert len(found) == 1, f"{what}: expected one span matching {match}, got {found}"
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_id == parent.span_id]


def traced(otlp: OtlpReceiver, trace_id: str, services: set[str], what: str) -> list[ReceivedSpan]:
    """The spans of one trace, once each of `services` has sent its server span."""
    otlp.wait_for(
        lambda spans: services
        <= {s.service for s in spans if s.trace_id == trace_id and s.kind == "SERVER"},
        what,
    )
    return otlp.trace(trace_id)


@pytest.mark.parametrize(("path", "service"), [("/users/me", "users"), ("/orders", "orders")])
def test_one_trace_crosses_gateway_backend_and_database(
    obs_stack: Stack, otlp: OtlpReceiver, traffic: Traffic, path: str, service: str
) -> None:
    trace_id, caller_span, traceparent = new_traceparent()
    status, _, body = http(
        "GET",
        f"{obs_stack.gateway_url}{path}",
        headers={**bearer(traffic.access_token), "traceparent": traceparent},
    )
    assert status == 200, body[:300]
    spans = traced(otlp, trace_id, {"gateway", service}, f"the gateway's and {service}' spans")

    gateway = one(spans, "gateway server span", service="gateway", kind="SERVER")
    assert gateway.parent_id == caller_span  # continues the caller's traceparent
    assert gateway.name == f"GET {path}"
    assert gateway.attributes["http.request.method"] == "GET"
    assert gateway.attributes["http.route"] == path
    assert gateway.attributes["url.path"] == path
    assert gateway.attributes["http.response.status_code"] == 200
    assert gateway.status == "UNSET"

    verify = one(children(spans, gateway), "token check", name="verify token")
    assert verify.attributes["passgate.token.cache"] in {"hit", "miss"}
    attempt = one(children(spans, gateway), "upstream attempt", kind="CLIENT")
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["url.full"].endswith(path)
    assert "http.request.resend_count" not in attempt.attributes  # the first attempt

    backend = one(spans, f"{service} server span", service=service, kind="SERVER")
    assert backend.parent_id == attempt.span_id, "the backend continues the attempt's span"
    database = [span for span in children(spans, backend) if "db.system" in span.attributes]
    assert database, f"no database span under the {service} service's: {spans}"
    for span in database:
        assert span.kind == "CLIENT"
        assert span.attributes["db.system"] in {"sqlite", "postgresql"}
        assert span.attributes["db.operation"] == "SELECT"
        statement = span.attributes["db.statement"]
        assert statement.startswith("SELECT") and traffic.user_id not in statement


def test_login_reaches_auth_and_its_database(
    obs_stack: Stack, otlp: OtlpReceiver, traffic: Traffic
) -> None:
    trace_id, _, traceparent = new_traceparent()
    status, _, body = http(
        "POST",
        f"{obs_stack.gateway_url}/auth/login",
        json_body={"username": traffic.username, "password": "not the password at all"},
        headers={"traceparent": traceparent},
    )
    assert status == 401, body[:300]
    spans = traced(otlp, trace_id, {"gateway", "auth"}, "the gateway's and auth's login spans")
    gateway = one(spans, "gateway server span", service="gateway", kind="SERVER")
    # The gateway answered what auth answered: a caller's error, not the server's.
    assert gateway.attributes["http.response.status_code"] == 401 and gateway.status == "UNSET"
    attempt = one(children(spans, gateway), "upstream attempt", kind="CLIENT")
    assert attempt.status == "ERROR" and attempt.attributes["error.type"] == "401"
    auth = one(spans, "auth server span", service="auth", kind="SERVER")
    assert auth.parent_id == attempt.span_id
    assert auth.attributes["http.route"] == "/auth/login"
    statements = [s for s in spans if s.service == "auth" and "db.statement" in s.attributes]
    assert statements, f"no database span in auth's part of the trace: {spans}"
    assert all(span.parent_id for span in statements)


def test_a_refused_token_is_an_error_of_its_check(obs_stack: Stack, otlp: OtlpReceiver) -> None:
    trace_id, _, traceparent = new_traceparent()
    status, _, _ = http(
        "GET",
        f"{obs_stack.gateway_url}/users/me",
        headers={"Authorization": "Bearer not.a.token", "traceparent": traceparent},
    )
    assert status == 401
    spans = traced(otlp, trace_id, {"gateway"}, "the gateway's span of a refused token")
    gateway = one(spans, "gateway server span", kind="SERVER")
    assert gateway.attributes["http.response.status_code"] == 401 and gateway.status == "UNSET"
    verify = one(children(spans, gateway), "token check", name="verify token")
    assert verify.status == "ERROR" and verify.attributes["error.type"] == "malformed"
    assert not [span for span in spans if span.kind == "CLIENT"], "a refused request went upstream"


def test_an_unsampled_caller_stays_unsampled_across_processes(
    obs_stack: Stack, otlp: OtlpReceiver, traffic: Traffic
) -> None:
    unsampled, _, traceparent = new_traceparent("00")
    status, _, _ = http(
        "GET",
        f"{obs_stack.gateway_url}/users/me",
        headers={**bearer(traffic.access_token), "traceparent": traceparent},
    )
    assert status == 200
    # A sampled request after it: once its spans are in, the unsampled one's would be too.
    sampled, _, traceparent = new_traceparent("01")
    http("GET", f"{obs_stack.gateway_url}/users/me",
         headers={**bearer(traffic.access_token), "traceparent": traceparent})
    traced(otlp, sampled, {"gateway", "users"}, "the sampled request's spans")
    assert otlp.trace(unsampled) == []


def test_no_span_of_a_whole_session_carries_a_secret(
    obs_stack: Stack, otlp: OtlpReceiver, traffic: Traffic
) -> None:
    """Tokens, the password, what auth stores for them, and a query string's secret: the
    traffic fixture's session (register, logins, a refresh and its replay, orders) and a
    request with a secret in its query."""
    query_secret = secrets.token_hex(16)
    trace_id, _, traceparent = new_traceparent()
    http(
        "GET",
        f"{obs_stack.gateway_url}/users/me?api_key={query_secret}",
        headers={**bearer(traffic.access_token), "traceparent": traceparent},
    )
    traced(otlp, trace_id, {"gateway", "users"}, "the spans of the request with a query secret")
    forbidden = {secret: "a token or password" for secret in traffic.secrets}
    for token in traffic.refresh_tokens:
        forbidden[hashlib.sha256(token.encode()).hexdigest()] = "a refresh-token hash"
    forbidden["$argon2"] = "a password hash"
    forbidden[query_secret] = "a query string's secret"
    forbidden["api_key"] = "a query string"
    spans = otlp.spans()
    assert {"gateway", "auth", "users", "orders"} <= {span.service for span in spans}
    leaks = {
        f"{span.service} span {span.name!r}: {what}"
        for span in spans
        for needle, what in forbidden.items()
        if needle in span.text
    }
    assert not leaks, "secrets in exported spans:\n" + "\n".join(sorted(leaks))
    assert otlp.refused == []
