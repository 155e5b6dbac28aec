"""The fields a relayed answer keeps, for every shape of upstream header list.

`gateway.headers.response_headers` runs on every answer, in one pass written for speed; a
plain statement of RFC 9110 7.6.1 and the gateway's own rules (no Server, no
Access-Control-*, its own fields replace the upstream's) is the model it must equal.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.headers import HOP_BY_HOP, response_headers

OWN = {"RateLimit-Policy": '"orders";q=100;w=60', "RateLimit": '"orders";r=99;t=1'}
NAMES = st.sampled_from([
    "Content-Type", "content-length", "Content-Length", "Connection", "connection", "Keep-Alive",
    "Server", "Transfer-Encoding", "Access-Control-Allow-Origin", "access-control-expose-headers",
    "X-Secret", "x-secret", "X-Kept", "RateLimit", "ratelimit-policy", "Set-Cookie", "Upgrade",
    "Close",
])
VALUES = st.one_of(
    st.sampled_from(["12", "x", "close", "keep-alive", "X-Secret", "x-secret, close",
                     " X-Kept ,,TE", "RateLimit", "Keep-Alive, X-Secret"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12),
)
HEADERS = st.lists(st.tuples(NAMES, VALUES), max_size=8)


Fields = list[tuple[str, str]]


def _model(raw: Fields, own: dict[str, str] | None) -> tuple[Fields, int | None]:
    listed = {token.strip().lower() for name, value in raw if name.lower() == "connection"
              for token in value.split(",")}
    replaced = {name.lower() for name in own or {}}
    dropped = HOP_BY_HOP | {"server", "content-length"} | listed | replaced
    kept = [(name, value.encode("latin-1").decode("utf-8", "surrogateescape"))
            for name, value in raw
            if name.lower() not in dropped and not name.lower().startswith("access-control-")]
    lengths = [value for name, value in raw
               if name.lower() == "content-length" and value.isascii() and value.isdigit()]
    return kept + list((own or {}).items()), int(lengths[-1]) if lengths else None


@settings(max_examples=300, deadline=None)
@given(raw=HEADERS, with_own=st.booleans())
@example(raw=[("X-Secret", "x"), ("Connection", "X-Secret")], with_own=False)  # listed after it
@example(raw=[("Connection", "close, X-Secret"), ("x-secret", "x")], with_own=False)  # and before
@example(raw=[("Close", "x"), ("Connection", "close")], with_own=False)  # RFC 9110 7.6.1: reserved
@example(raw=[("RateLimit", "upstream's"), ("Content-Length", "12")], with_own=True)
def test_the_fields_kept_are_the_rules_whatever_the_order(raw: Fields, with_own: bool) -> None:
    own = OWN if with_own else None
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in raw]
    kept, length = response_headers(encoded, own)
    expected_kept, expected_length = _model(raw, own)
    assert kept == expected_kept
    if sum(name.lower() == "content-length" for name, _ in raw) <= 1:  # llhttp refuses two
        assert length == expected_length
