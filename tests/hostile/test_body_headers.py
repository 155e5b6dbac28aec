"""Every request header that changes how a body is read, with bad values: a prompt 4xx,
nothing stored, no backend ever reading a coded or mis-framed body.

The review found `Content-Encoding: gzip` over a body that is not gzip answered 502 in one
run and nothing within 5 s in another. The class is every header that says how to read the
body: Content-Encoding (refused at the gateway, 415, RFC 7694: no service decodes request
content codings), Content-Type's charset (the API's bodies are UTF-8: 415), Transfer-Encoding
and Content-Length disagreements (refused by the HTTP parser, 400, or by the gateway's body
limits). Each is sent byte for byte over a raw socket to the real stack.
"""

from __future__ import annotations

import gzip
import uuid

import pytest

from devstack.stack import Stack
from tests.hostile.test_proxy import (
    ORDER,
    assert_refused_by_parser,
    order_count,
    send,
    service_logs,
)
from tests.support.hostile import PROBLEM_TYPE, Client, Secrets, User, assert_raw_refused

pytestmark = pytest.mark.e2e

# (extra header lines, body, statuses the gateway may answer)
CODED = {
    "gzip-not-gzip": ("Content-Encoding: gzip", ORDER, (415,)),
    "gzip-real": ("Content-Encoding: gzip", gzip.compress(ORDER), (415,)),
    "br": ("Content-Encoding: br", ORDER, (415,)),
    "deflate": ("Content-Encoding: deflate", ORDER, (415,)),
    "stacked": ("Content-Encoding: gzip, identity", ORDER, (415,)),
    "two-fields": ("Content-Encoding: identity\nContent-Encoding: gzip", ORDER, (415,)),
    "unknown": ("Content-Encoding: x-passgate", ORDER, (415,)),
    "latin-1": ("Content-Type: application/json; charset=latin-1", ORDER, (415,)),
    "utf-16": ("Content-Type: application/json; charset=utf-16", ORDER.decode().encode("utf-16"), (415,)),
    "quoted-odd-charset": ('Content-Type: application/json; charset="koi8-r"', ORDER, (415,)),
    "length-short": ("Content-Length: {short}", ORDER, (400, 422)),
}
PARSER = {
    "te-gzip": "Transfer-Encoding: gzip",
    "te-chunked-then-gzip": "Transfer-Encoding: chunked, gzip",
    "te-unknown": "Transfer-Encoding: x-passgate",
    "two-lengths": "Content-Length: {n}\nContent-Length: {m}",
    "signed-length": "Content-Length: +{n}",
    "negative-length": "Content-Length: -1",
    "length-list": "Content-Length: {n}, {n}",
}


def _head(alice: User, marker: str, extra: str, *, content_type: bool = True) -> str:
    lines = [f"POST /orders HTTP/1.1", "Host: gateway", f"Authorization: Bearer {alice.access_token}",
             f"Idempotency-Key: {marker}"]
    if content_type and "content-type" not in extra.lower():
        lines.append("Content-Type: application/json")
    lines.append(extra)
    return "\n".join(lines)


@pytest.mark.parametrize("case", list(CODED))
async def test_a_body_no_service_can_read_is_refused_at_the_gateway(
    stack: Stack, gateway: Client, alice: User, secrets: Secrets, case: str
) -> None:
    extra, body, statuses = CODED[case]
    marker = str(uuid.uuid4())
    before = order_count(gateway, alice)
    if "{short}" in extra:
        extra = extra.format(short=len(body) - 5)
    elif "content-length" not in extra.lower():
        extra += f"\nContent-Length: {len(body)}"
    # Whether the connection is closed afterwards is not this test's question: not probed.
    reply = await send(stack, _head(alice, marker, extra), body, timeout=10.0, probe_close=False)
    if case == "length-short":
        # The first bytes are read as the body (invalid JSON: 400), the rest as a next
        # request, which the parser refuses; either way nothing is stored.
        assert reply.status in statuses, (reply.status, reply.head)
    else:
        problem = assert_raw_refused(reply, statuses)
        assert problem is not None and problem["detail"]
        if "Content-Encoding" in extra:
            assert reply.header("Accept-Encoding") == "identity"
        assert marker not in service_logs(stack), "a backend read a body it cannot decode"
    assert order_count(gateway, alice) == before


@pytest.mark.parametrize("case", list(PARSER))
async def test_framing_that_disagrees_is_refused_by_the_parser(
    stack: Stack, gateway: Client, alice: User, secrets: Secrets, case: str
) -> None:
    marker = str(uuid.uuid4())
    before = order_count(gateway, alice)
    framing = PARSER[case].format(n=len(ORDER), m=len(ORDER) + 3)
    reply = await send(stack, _head(alice, marker, framing), ORDER, timeout=10.0)
    if reply.content_type == PROBLEM_TYPE:
        assert_raw_refused(reply, (400, 411, 413, 415, 501))
    else:
        assert_refused_by_parser(reply, secrets)
    assert marker not in service_logs(stack)
    assert order_count(gateway, alice) == before


def test_utf8_charset_in_any_spelling_is_accepted(gateway: Client, alice: User) -> None:
    for spelling in ("utf-8", "UTF-8", '"utf-8"', "utf8"):
        reply = gateway.post(
            "/orders", token=alice.access_token, body=ORDER,
            headers={"Content-Type": f"application/json; charset={spelling}"},
        )
        assert reply.status == 201, (spelling, reply.status, reply.body[:200])
