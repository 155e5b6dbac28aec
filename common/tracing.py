"""W3C Trace Context (https://www.w3.org/TR/trace-context/): parse, continue, propagate."""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

from aiohttp import web

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# version 00: 2-hex version, 32-hex trace id, 16-hex parent id, 2-hex flags (section 3.2).
_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceContext(NamedTuple):
    """This process's span of a trace: the trace id, our span id, and the caller's span.
    (A NamedTuple, not a frozen dataclass: one is made per request, and a frozen
    dataclass's __init__ costs several times a tuple's.)"""

    trace_id: str
    span_id: str
    parent_id: str | None
    flags: str = "01"

    def traceparent(self) -> str:
        """The header to send downstream: same trace, our span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


# Declared beside its type and re-exported by common.app_keys (no import circle).
TRACE = web.RequestKey("trace", TraceContext)


def continue_trace(header: str | None, *, random_hex: str | None = None) -> TraceContext:
    """Continue the caller's trace when its traceparent is valid, else start a new one.

    `random_hex`, at least 48 random hex digits, saves drawing them here: the span id is
    its first 16, a new trace id the next 32.
    """
    if random_hex is None:
        random_hex = secrets.token_hex(24)
    span_id = random_hex[:16]
    match = _TRACEPARENT_RE.match(header.strip()) if header else None
    if match:
        version, trace_id, parent_id, flags = match.groups()
        # Section 3.2.2: version ff is invalid; all-zero ids are invalid.
        if version != "ff" and trace_id != _ZERO_TRACE and parent_id != _ZERO_SPAN:
            return TraceContext(trace_id, span_id, parent_id, flags)
    return TraceContext(random_hex[16:48], span_id, None)
