"""A client's W3C traceparent is continued by the gateway and the backend: one trace id in both
processes' JSON log lines and in problem bodies; no log line carries a token or a password."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from tests.support.observability import Traffic, http
from tests.support.polling import poll

pytestmark = pytest.mark.e2e

ACCESS_FIELDS = {
    "ts",
    "level",
    "service",
    "request_id",
    "trace_id",
    "route",
    "status",
    "duration_ms",
}


def log_lines(stack: Stack, process: str) -> list[dict[str, Any]]:
    path: Path = stack.config.data_dir / "logs" / f"{process}.log"
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line a dependency printed itself; the JSON ones are what we read
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def lines_with_trace(stack: Stack, process: str, trace_id: str) -> list[dict[str, Any]] | None:
    """The process's lines of one trace, once its access line (written last) is there."""
    found = [entry for entry in log_lines(stack, process) if entry.get("trace_id") == trace_id]
    return found if any(entry.get("access") for entry in found) else None


def new_traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def test_traceparent_reaches_the_backend_logs(obs_stack: Stack, traffic: Traffic) -> None:
    trace_id, traceparent = new_traceparent()
    status, headers, body = http(
        "GET",
        f"{obs_stack.gateway_url}/users/me?trace_check=1",
        headers={"Authorization": f"Bearer {traffic.access_token}", "traceparent": traceparent},
    )
    assert status == 200, body[:300]
    request_id = headers["X-Request-Id"]

    gateway = poll(
        lambda: lines_with_trace(obs_stack, "gateway-1", trace_id),
        timeout=10,
        what=f"trace {trace_id} in the gateway's log",
    )
    users = poll(
        lambda: lines_with_trace(obs_stack, "users-1", trace_id),
        timeout=10,
        what=f"trace {trace_id} in the users service's log",
    )

    # The gateway forwards its request id too, so one id ties the two processes' lines.
    assert {entry.get("request_id") for entry in gateway} == {request_id}, gateway
    assert {entry.get("request_id") for entry in users} == {request_id}, users
    assert {entry["service"] for entry in gateway} == {"gateway"}
    assert {entry["service"] for entry in users} == {"users"}

    # Each side's access line: the fields the dashboard's users read, the user, no query string.
    for side, entries in (("gateway", gateway), ("users", users)):
        access = [entry for entry in entries if entry.get("access")]
        assert len(access) == 1, f"{side}: {entries}"
        (line,) = access
        assert ACCESS_FIELDS <= set(line), f"{side} access line lacks {ACCESS_FIELDS - set(line)}"
        assert line["status"] == 200 and line["user_id"] == traffic.user_id, line
        assert line["route"] != "unmatched" and "trace_check" not in json.dumps(line), line


def test_problem_body_carries_the_callers_trace_id(obs_stack: Stack) -> None:
    trace_id, traceparent = new_traceparent()
    status, headers, body = http(
        "GET", f"{obs_stack.gateway_url}/orders", headers={"traceparent": traceparent}
    )
    assert status == 401
    problem = json.loads(body)
    assert problem["trace_id"] == trace_id
    assert problem["request_id"] == headers["X-Request-Id"]
    gateway = poll(
        lambda: lines_with_trace(obs_stack, "gateway-1", trace_id),
        timeout=10,
        what=f"trace {trace_id} in the gateway's log",
    )
    assert any(entry.get("status") == 401 for entry in gateway), gateway


def test_logs_never_carry_tokens_passwords_or_their_hashes(
    obs_stack: Stack, traffic: Traffic
) -> None:
    """Neither the secrets nor what auth stores for them (an Argon2 hash of the password, a
    SHA-256 of each refresh token), which would be enough to attack them offline."""
    forbidden = {secret: "a token or password" for secret in traffic.secrets}
    for token in traffic.refresh_tokens:
        forbidden[hashlib.sha256(token.encode()).hexdigest()] = "a refresh-token hash"
    forbidden["$argon2"] = "a password hash"
    leaks = set()
    for path in sorted((obs_stack.config.data_dir / "logs").glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            for needle, what in forbidden.items():
                if needle in line:
                    try:
                        logger = json.loads(line).get("logger", "?")
                    except ValueError:
                        logger = "not JSON"
                    leaks.add(f"{path.name}: {what}, logged by {logger!r}")
    assert not leaks, "secrets in the logs:\n" + "\n".join(sorted(leaks))
