"""Input attacks on every body-taking service, through the gateway: malformed JSON, wrong
types, unknown fields (mass assignment), huge numbers and strings, control characters and
Unicode edge cases (lone surrogates, NUL, bidi overrides, overlong UTF-8).

Each is a 400 (or 415 for a wrong media type) problem+json that does not echo what was
sent, and nothing is stored: Alice's orders and profile stay as they were, and a refused
registration leaves its username free.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from tests.support.hostile import Client, Secrets, User, assert_refused

pytestmark = pytest.mark.e2e

ITEM = '{"sku": "ok-1", "quantity": 1, "unit_price_cents": 100}'


def _order(items: str = f"[{ITEM}]", extra: str = "") -> bytes:
    return ('{"items": ' + items + extra + "}").encode()


def _item(**fields: str) -> str:
    base = {"sku": '"ok-1"', "quantity": "1", "unit_price_cents": "100"}
    base.update(fields)
    return "[{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}]"


# Bodies shared by all three targets: not JSON at all, or JSON of the wrong shape.
MALFORMED = {
    "empty": b"",
    "truncated": b'{"items": [',
    "trailing-comma": b'{"display_name": "x",}',
    "single-quotes": b"{'display_name': 'x'}",
    "comment": b'{"display_name": "x" /* hi */}',
    "nan": b'{"display_name": NaN}',
    "infinity": b'{"display_name": -Infinity}',
    "bare-null": b"null",
    "bare-array": b"[]",
    "bare-string": b'"display_name"',
    "two-documents": b'{"display_name": "a"}{"display_name": "b"}',
    "utf8-bom": b'\xef\xbb\xbf{"display_name": "x"}',
    "deep-nesting": b"[" * 20_000 + b"]" * 20_000,
    "deep-object-nesting": b'{"a":' * 8_000 + b"1" + b"}" * 8_000,
    "raw-nul-in-string": b'{"display_name": "a\x00b"}',
    "raw-newline-in-string": b'{"display_name": "a\nb"}',
    "overlong-utf8-dot": b'{"display_name": "\xc0\xae\xc0\xae"}',
    "overlong-utf8-slash": b'{"display_name": "\xe0\x80\xaf"}',
    "overlong-utf8-nul": b'{"display_name": "a\xc0\x80b"}',
    "utf8-encoded-surrogate": b'{"display_name": "\xed\xa0\x80"}',
    "invalid-utf8-byte": b'{"display_name": "\xff\xfe"}',
    "utf16-body": '{"display_name": "x"}'.encode("utf-16"),
}

ORDER_CASES: dict[str, bytes] = {
    "items-not-array": _order('{"sku": "a"}'),
    "items-empty": _order("[]"),
    "items-too-many": _order("[" + ", ".join([ITEM] * 101) + "]"),
    "quantity-as-text": _order(_item(quantity='"1"')),
    "quantity-fraction": _order(_item(quantity="1.5")),
    "quantity-bool": _order(_item(quantity="true")),
    "quantity-zero": _order(_item(quantity="0")),
    "quantity-negative": _order(_item(quantity="-1")),
    "quantity-huge": _order(_item(quantity="1" + "0" * 30)),
    "quantity-over-python-digit-limit": _order(_item(quantity="9" * 5000)),
    "price-exponent-overflow": _order(_item(unit_price_cents="1e400")),
    "price-over-maximum": _order(_item(unit_price_cents="1000000001")),
    "price-negative-zero-fraction": _order(_item(unit_price_cents="-0.5")),
    "sku-empty": _order(_item(sku='""')),
    "sku-too-long": _order(_item(sku=json.dumps("s" * 65))),
    "sku-huge": _order(_item(sku=json.dumps("s" * 60_000))),
    "sku-null": _order(_item(sku="null")),
    "sku-nul-escaped": _order(_item(sku='"a\\u0000b"')),
    "sku-escape-sequence": _order(_item(sku='"\\u001b[31mred"')),
    "sku-lone-high-surrogate": _order(_item(sku='"a\\ud800"')),
    "sku-lone-low-surrogate": _order(_item(sku='"\\udfffa"')),
    "sku-reversed-surrogates": _order(_item(sku='"\\udc00\\ud800"')),
    "sku-rtl-override": _order(_item(sku='"abc\\u202egpj.exe"')),
    "sku-bidi-isolate": _order(_item(sku='"abc\\u2066x\\u2069"')),
    "sku-line-separator": _order(_item(sku='"a\\u2028b"')),
    "sku-c1-control": _order(_item(sku='"a\\u0085b"')),
    "note-too-long": _order(extra=', "note": ' + json.dumps("n" * 501)),
    "note-nul": _order(extra=', "note": "a\\u0000b"'),
    "note-rtl-override": _order(extra=', "note": "\\u202eevil"'),
    "note-lone-surrogate": _order(extra=', "note": "\\ud83d"'),
    "note-wrong-type": _order(extra=', "note": 5'),
    "unknown-field-user_id": _order(extra=', "user_id": "00000000-0000-4000-8000-000000000001"'),
    "unknown-field-total_cents": _order(extra=', "total_cents": 0'),
    "unknown-field-status": _order(extra=', "status": "cancelled"'),
    "unknown-field-id": _order(extra=', "id": "00000000-0000-4000-8000-000000000002"'),
    "unknown-field-in-item": _order(_item(discount_cents="100")),
    "duplicate-key-last-invalid": b'{"items": [' + ITEM.encode() + b'], "items": []}',
    **{f"malformed-{k}": v for k, v in MALFORMED.items()},
}

PROFILE_CASES: dict[str, bytes] = {
    "display-name-number": b'{"display_name": 123}',
    "display-name-array": b'{"display_name": ["x"]}',
    "display-name-object": b'{"display_name": {"$ne": ""}}',
    "display-name-empty": b'{"display_name": ""}',
    "display-name-spaces-only": b'{"display_name": "   "}',
    "display-name-too-long": json.dumps({"display_name": "d" * 101}).encode(),
    "display-name-huge": json.dumps({"display_name": "d" * 60_000}).encode(),
    "display-name-nul": b'{"display_name": "a\\u0000b"}',
    "display-name-bell": b'{"display_name": "a\\u0007b"}',
    "display-name-ansi-escape": b'{"display_name": "\\u001b[2J\\u001b[Hadmin"}',
    "display-name-del": b'{"display_name": "a\\u007fb"}',
    "display-name-c1": b'{"display_name": "a\\u009bb"}',
    "display-name-line-separator": b'{"display_name": "a\\u2029b"}',
    "display-name-lone-surrogate": b'{"display_name": "\\ud800"}',
    "display-name-rtl-override": b'{"display_name": "alice\\u202enimda"}',
    "display-name-rtl-embedding": b'{"display_name": "\\u202bevil\\u202c"}',
    "display-name-bidi-isolate": b'{"display_name": "\\u2067admin\\u2069"}',
    "unknown-field-username": b'{"display_name": "x", "username": "admin"}',
    "unknown-field-id": b'{"display_name": "x", "id": "00000000-0000-4000-8000-000000000001"}',
    "unknown-field-created_at": b'{"display_name": "x", "created_at": "2000-01-01T00:00:00Z"}',
    "missing-field": b"{}",
    **{f"malformed-{k}": v for k, v in MALFORMED.items()},
}


def _register(username: str, **changes: object) -> bytes:
    body: dict[str, object] = {"username": username, "password": "a perfectly good password"}
    body.update(changes)
    return json.dumps(body).encode()


REGISTER_CASES: dict[str, Callable[[str], bytes]] = {
    "unknown-field-role": lambda u: _register(u, role="admin"),
    "unknown-field-scope": lambda u: _register(u, scope="admin"),
    "unknown-field-id": lambda u: _register(u, id="00000000-0000-4000-8000-000000000001"),
    "username-upper-case": lambda u: _register(u.upper()),
    "username-too-long": lambda u: _register(u + "x" * 64),
    "username-path": lambda u: _register(f"../{u}"),
    "username-nul": lambda u: _register(f"{u}\u0000"),
    "username-homoglyph": lambda u: _register(u.replace("h", "\u04bb")),
    "username-number": lambda u: json.dumps({"username": 12345, "password": "a perfectly good password"}).encode(),
    "password-too-short": lambda u: _register(u, password="short"),
    "password-too-long": lambda u: _register(u, password="p" * 257),
    "password-number": lambda u: _register(u, password=123456789012),
    "display-name-rtl-override": lambda u: _register(u, display_name="\u202eevil"),
    "display-name-lone-surrogate": lambda u: (
        b'{"username": "' + u.encode() + b'", "password": "a perfectly good password", '
        b'"display_name": "\\udfff"}'
    ),
    "display-name-nul": lambda u: _register(u, display_name="a\u0000b"),
    **{f"malformed-{k}": (lambda u, body=v: body) for k, v in MALFORMED.items()},
}


def _post(gateway: Client, method: str, path: str, body: bytes, token: str | None = None,
          content_type: str = "application/json"):
    return gateway.request(method, path, headers={"Content-Type": content_type}, body=body, token=token)


def _orders(gateway: Client, user: User) -> list[str]:
    reply = gateway.get("/orders?limit=100", token=user.access_token)
    assert reply.status == 200
    return [order["id"] for order in reply.json()["items"]]


@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_a_hostile_order_body_is_refused_and_nothing_stored(
    gateway: Client, alice: User, secrets: Secrets, case: str
) -> None:
    before = _orders(gateway, alice)
    reply = _post(gateway, "POST", "/orders", ORDER_CASES[case], alice.access_token)
    problem = assert_refused(reply, 400, secrets=secrets)
    # Huge inputs are not echoed back.
    assert len(reply.body) < 4096, len(reply.body)
    assert problem["type"].endswith("invalid-request")
    assert _orders(gateway, alice) == before


@pytest.mark.parametrize("case", list(PROFILE_CASES))
def test_a_hostile_profile_update_is_refused_and_nothing_stored(
    gateway: Client, alice: User, secrets: Secrets, case: str
) -> None:
    before = gateway.get("/users/me", token=alice.access_token).json()
    reply = _post(gateway, "PATCH", "/users/me", PROFILE_CASES[case], alice.access_token)
    assert_refused(reply, 400, secrets=secrets)
    assert len(reply.body) < 4096, len(reply.body)
    assert gateway.get("/users/me", token=alice.access_token).json() == before


@pytest.mark.parametrize("case", list(REGISTER_CASES))
def test_a_hostile_registration_is_refused_and_nothing_stored(
    gateway: Client, secrets: Secrets, case: str
) -> None:
    username = f"h-{uuid.uuid4().hex[:16]}"
    reply = _post(gateway, "POST", "/auth/register", REGISTER_CASES[case](username))
    assert_refused(reply, 400, secrets=secrets, sent=["a perfectly good password"])
    assert len(reply.body) < 4096, len(reply.body)
    # The name is still free: no account (nor profile) was created for it.
    created = gateway.post(
        "/auth/register", json_body={"username": username, "password": "another good password 1"}
    )
    assert created.status == 201, created.body
    secrets.add("another good password 1")


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/orders", "text/plain"),
        ("POST", "/orders", "application/x-www-form-urlencoded"),
        ("PATCH", "/users/me", "application/xml"),
        ("PATCH", "/users/me", "multipart/form-data; boundary=x"),
        ("POST", "/auth/register", "text/json"),
        ("POST", "/auth/login", "application/javascript"),
    ],
)
def test_a_body_of_another_media_type_is_refused(
    gateway: Client, alice: User, secrets: Secrets, method: str, path: str, content_type: str
) -> None:
    before = _orders(gateway, alice)
    body = json.dumps({"items": json.loads(f"[{ITEM}]"), "display_name": "x"}).encode()
    reply = _post(gateway, method, path, body, alice.access_token, content_type=content_type)
    assert_refused(reply, 415, secrets=secrets)
    assert _orders(gateway, alice) == before


def test_unusual_but_valid_text_is_stored_exactly(gateway: Client, alice: User) -> None:
    """The control: real-world Unicode (accents, CJK, emoji with joiners, RTL script
    without override characters) is accepted and comes back byte for byte."""
    name = "Zoë 李 👩\u200d💻 مرحبا"
    reply = _post(gateway, "PATCH", "/users/me", json.dumps({"display_name": name}).encode(), alice.access_token)
    assert reply.status == 200, reply.body
    assert gateway.get("/users/me", token=alice.access_token).json()["display_name"] == name
    order = {"items": [{"sku": "книга-1", "quantity": 1, "unit_price_cents": 0}], "note": "line 1\nline 2\tend"}
    placed = gateway.post("/orders", json_body=order, token=alice.access_token)
    assert placed.status == 201, placed.body
    assert {k: placed.json()[k] for k in ("items", "note")} == order
