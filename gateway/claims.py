"""Claims to headers: a route's chosen token claims, forwarded as X-User-* header lines.

KrakenD's `propagate_claims` and Envoy's `claim_to_headers`, in Passgate's reserved identity
namespace: every inbound X-User-* field is dropped before these are added (gateway.headers),
so only the gateway can set them, and the routes file cannot name a header the gateway sets
itself (X-User-Id ...). Prepared once per route when the table loads.

Values: a string claim as it is; any other JSON value (number, boolean, list, object) as
compact JSON with sorted keys, so one claim always gives one spelling. A value that cannot
be a header value as it stands (control characters, non-ASCII, leading or trailing space,
longer than MAX_VALUE_LENGTH) refuses the token for this route (401) rather than reach the
backend altered; a claim the token lacks (or an empty
string) sends no header.
"""

from __future__ import annotations

import json
import re

from gateway.verification import TokenError, Verified

MAX_VALUE_LENGTH = 1024
_SAFE_VALUE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")


class ClaimHeaders:
    """One route's (claim, header) pairs, rendered from a verified token's claims."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self._pairs = pairs

    def lines(self, verified: Verified) -> str:
        claims = verified.claims
        lines = []
        for claim, header in self._pairs:
            if claim not in claims:
                continue
            value = render(claims[claim])
            if not value:
                continue  # an empty string says nothing a missing header does not
            if len(value) > MAX_VALUE_LENGTH or not _SAFE_VALUE.match(value):
                raise TokenError(
                    "malformed", f"the token's {claim!r} claim cannot be forwarded as a header"
                )
            lines.append(f"{header}: {value}\r\n")
        return "".join(lines)


def render(value: object) -> str:
    """A claim's header spelling: strings as they are, other JSON values as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
