"""Token attacks (jwt_tool's playbook, RFC 8725): each forged token is refused with a 401
problem+json carrying `error="invalid_token"`, no order is placed with it, nothing the
attacker sent is echoed, and no key is ever fetched from where a token points.

Every forged token is presented on POST /orders with a valid body, as Alice, so "nothing
stored" is checked on the way: Alice's orders stay as they were.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from devstack.stack import Stack
from tests.support.hostile import (
    Client,
    Secrets,
    User,
    assert_refused,
    assert_token_refused,
    b64url,
    b64url_json,
    hs256,
    rs256,
    tripwire,
    unsigned,
)

pytestmark = pytest.mark.e2e

ORDER = {"items": [{"sku": "hostile-1", "quantity": 1, "unit_price_cents": 100}]}
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_KID = "attacker-key"


def claims(stack: Stack, user: User, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": stack.issuer,
        "aud": "passgate",
        "sub": user.id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": "users:read users:write orders:read orders:write admin",
        "client_id": "passgate",
    }
    for name, value in changes.items():
        if value is _DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


_DROP = object()


def order_count(gateway: Client, user: User) -> int:
    reply = gateway.get("/orders?limit=100", token=user.access_token)
    assert reply.status == 200, reply.body
    return len(reply.json()["items"])


def attempt(gateway: Client, token: str, alice: User, secrets: Secrets) -> dict[str, Any]:
    """Present the token on POST /orders; refused, and Alice still has no order from it."""
    before = order_count(gateway, alice)
    reply = gateway.post("/orders", json_body=ORDER, token=token)
    problem = assert_token_refused(reply, token, secrets)
    assert order_count(gateway, alice) == before
    return problem


@pytest.fixture(scope="module")
def published(gateway: Client) -> dict[str, Any]:
    """Auth's public key as anyone can read it through the gateway: the attacker's material."""
    reply = gateway.get("/.well-known/jwks.json")
    assert reply.status == 200
    return reply.json()["keys"][0]


def test_a_genuine_token_works(gateway: Client, stack: Stack, alice: User, signing_key) -> None:
    """The control: the forging helpers make tokens the gateway accepts when nothing is wrong."""
    key, kid = signing_key
    token = rs256({"kid": kid, "typ": "at+jwt"}, claims(stack, alice), key)
    assert gateway.get("/users/me", token=token).status == 200


# -- alg none --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "signature"),
    [
        ("none", ""),
        ("None", ""),
        ("NONE", ""),
        ("nOnE", ""),
        ("none", "c2lnbmF0dXJl"),
        ("", ""),
        (None, ""),
    ],
    ids=["none", "None", "NONE", "nOnE", "none-with-signature", "empty-alg", "no-alg"],
)
def test_alg_none_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, alg, signature
) -> None:
    header: dict[str, Any] = {"typ": "at+jwt", "kid": signing_key[1]}
    if alg is not None:
        header["alg"] = alg
    attempt(gateway, unsigned(header, claims(stack, alice), signature), alice, secrets)


# -- HS256 keyed with the public key (algorithm confusion) ------------------------------


def _public_key(published: dict[str, Any]) -> rsa.RSAPublicKey:
    return RSAAlgorithm.from_jwk(json.dumps(published))  # type: ignore[return-value]


def _secrets_from_public_key(published: dict[str, Any]) -> dict[str, bytes]:
    public = _public_key(published)
    spki_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return {
        "pem-spki": spki_pem,
        "pem-spki-no-final-newline": spki_pem.rstrip(b"\n"),
        "pem-pkcs1": pkcs1_pem,
        "der-spki": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der-pkcs1": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
        "jwk-json-as-published": json.dumps(published).encode(),
        "jwk-json-compact": json.dumps(published, separators=(",", ":"), sort_keys=True).encode(),
        "jwk-modulus-bytes": base64.urlsafe_b64decode(published["n"] + "=="),
    }


HS_SECRET_FORMS = [
    "pem-spki",
    "pem-spki-no-final-newline",
    "pem-pkcs1",
    "der-spki",
    "der-pkcs1",
    "jwk-json-as-published",
    "jwk-json-compact",
    "jwk-modulus-bytes",
]


@pytest.mark.parametrize("form", HS_SECRET_FORMS)
def test_hs256_signed_with_the_public_key_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, published, form: str
) -> None:
    secret = _secrets_from_public_key(published)[form]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": published["kid"]}
    attempt(gateway, hs256(header, claims(stack, alice), secret), alice, secrets)


# -- attacker keys carried by the token ---------------------------------------------------


def _attacker_jwk(kid: str = ATTACKER_KID) -> dict[str, Any]:
    jwk = json.loads(RSAAlgorithm.to_jwk(ATTACKER_KEY.public_key()))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


def _attacker_certificate() -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "passgate-auth")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ATTACKER_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ATTACKER_KEY, hashes.SHA256())
    )


EMBEDDED = ["jwk", "jwk-with-real-kid", "jku", "jku-with-real-kid", "x5u", "x5c", "x5c-with-real-kid"]


@pytest.mark.parametrize("where", EMBEDDED)
def test_an_attacker_key_named_by_the_token_is_never_used_or_fetched(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, where: str
) -> None:
    real_kid = signing_key[1]
    kid = real_kid if where.endswith("real-kid") else ATTACKER_KID
    with tripwire() as wire:
        wire.keys = [_attacker_jwk(kid)]
        certificate = _attacker_certificate()
        header: dict[str, Any] = {"typ": "at+jwt", "kid": kid}
        if where.startswith("jwk"):
            header["jwk"] = _attacker_jwk(kid)
        elif where.startswith("jku"):
            header["jku"] = f"{wire.url}/.well-known/jwks.json"
        elif where == "x5u":
            header["x5u"] = f"{wire.url}/certificate.pem"
        else:
            header["x5c"] = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]
        attempt(gateway, rs256(header, claims(stack, alice), ATTACKER_KEY), alice, secrets)
        assert wire.requests == [], f"the gateway fetched what the token named: {wire.requests}"


# -- kid injection ----------------------------------------------------------------------

KIDS = {
    "path-traversal-dev-null": "../../../../../../../../dev/null",
    "absolute-dev-null": "/dev/null",
    "path-traversal-key-dir": "../keys/../../../../etc/passwd",
    "sql-injection": "x' UNION SELECT 'AAAA' -- ",
    "sql-tautology": "' OR '1'='1",
    "command-injection": "key|touch /tmp/passgate-kid-pwned",
    "nul-byte": "kid\u0000.pem",
    "crlf": "kid\r\nX-User-Scopes: admin",
    "url": "http://127.0.0.1:1/key.pem",
}


@pytest.mark.parametrize("name", list(KIDS))
@pytest.mark.parametrize("alg", ["HS256", "RS256"])
def test_kid_injection_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, name: str, alg: str
) -> None:
    """A kid that names a file, a query or a command: only auth's published kids exist.
    HS256 is signed with the empty secret (what /dev/null holds), RS256 with an attacker key."""
    header = {"alg": alg, "typ": "at+jwt", "kid": KIDS[name]}
    body = claims(stack, alice)
    token = hs256(header, body, b"") if alg == "HS256" else rs256(header, body, ATTACKER_KEY)
    attempt(gateway, token, alice, secrets)


@pytest.mark.parametrize("kid", [123, ["a"], {"k": "v"}, True, "", "k" * 5000])
def test_kid_of_the_wrong_shape_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, kid: Any
) -> None:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    token = unsigned(header, claims(stack, alice), b64url(b"x" * 256))
    attempt(gateway, token, alice, secrets)


# -- crit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["x-passgate-unknown"], "x-passgate-unknown": True},
        {"crit": ["x-passgate-unknown"]},
        {"crit": ["exp"]},
        {"crit": []},
        {"crit": "x-passgate-unknown"},
        {"b64": False, "crit": ["b64"]},
    ],
    ids=["unknown-extension", "listed-but-absent", "registered-name", "empty", "not-a-list", "b64-false"],
)
def test_a_critical_header_the_gateway_does_not_understand_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, extra
) -> None:
    """RFC 7515 section 4.1.11: signed by auth's own key, and still refused."""
    key, kid = signing_key
    token = rs256({"typ": "at+jwt", "kid": kid, **extra}, claims(stack, alice), key)
    attempt(gateway, token, alice, secrets)


# -- the signature's encoding -------------------------------------------------------------


def _noncanonical(segment: str) -> str:
    """The same bytes with the unused low bits of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[last | (0b1111 if len(segment) % 4 == 2 else 0b11)]


SIGNATURE_TWEAKS: dict[str, Callable[[str, str, str], str]] = {
    "padding-1": lambda h, p, s: f"{h}.{p}.{s}=",
    "padding-2": lambda h, p, s: f"{h}.{p}.{s}==",
    "trailing-A": lambda h, p, s: f"{h}.{p}.{s}A",
    "trailing-AA": lambda h, p, s: f"{h}.{p}.{s}AA",
    "trailing-junk": lambda h, p, s: f"{h}.{p}.{s}!!!!",
    "fourth-segment": lambda h, p, s: f"{h}.{p}.{s}.{s}",
    "noncanonical-last-character": lambda h, p, s: f"{h}.{p}.{_noncanonical(s)}",
    "standard-base64-alphabet": lambda h, p, s: f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}+/",
    "truncated": lambda h, p, s: f"{h}.{p}.{s[:-4]}",
    "empty": lambda h, p, s: f"{h}.{p}.",
    "padded-header": lambda h, p, s: f"{h}=.{p}.{s}",
    "padded-payload": lambda h, p, s: f"{h}.{p}==.{s}",
    "whitespace-inside": lambda h, p, s: f"{h}.{p}.{s[:10]} {s[10:]}",
}


@pytest.mark.parametrize("tweak", list(SIGNATURE_TWEAKS))
def test_trailing_data_or_padding_on_a_genuine_token_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, tweak: str
) -> None:
    """A token has exactly one spelling (RFC 7515 section 2: base64url without padding).
    Other spellings of auth's own signature are refused: a malleable token is a different
    string for every cache, deny list and log that keys on it."""
    key, kid = signing_key
    genuine = rs256({"typ": "at+jwt", "kid": kid}, claims(stack, alice), key)
    forged = SIGNATURE_TWEAKS[tweak](*genuine.split("."))
    assert forged != genuine
    attempt(gateway, forged, alice, secrets)


# -- tampering with a genuine token ---------------------------------------------------------


def _tamper(token: str, *, header: dict | None = None, payload: dict | None = None) -> str:
    h, p, s = token.split(".")
    if header is not None:
        h = b64url_json({**json.loads(base64.urlsafe_b64decode(h + "==")), **header})
    if payload is not None:
        p = b64url_json({**json.loads(base64.urlsafe_b64decode(p + "==")), **payload})
    return f"{h}.{p}.{s}"


TAMPERING = {
    "payload-scope-admin": {"payload": {"scope": "users:read users:write orders:read orders:write admin"}},
    "payload-other-subject": {"payload": {"sub": "00000000-0000-4000-8000-000000000001"}},
    "payload-longer-exp": {"payload": {"exp": int(time.time()) + 800}},
    "header-kid": {"header": {"kid": "another-kid"}},
    "header-alg-rs512": {"header": {"alg": "RS512"}},
    "header-alg-ps256": {"header": {"alg": "PS256"}},
    "header-typ": {"header": {"typ": "JWT"}},
    "header-reencoded-same-fields": {"header": {}},
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_with_a_genuine_token_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, name: str
) -> None:
    key, kid = signing_key
    genuine = rs256(
        {"typ": "at+jwt", "kid": kid},
        claims(stack, alice, scope="users:read users:write orders:read orders:write"),
        key,
    )
    # Re-encoding the header with spaces changes its bytes even when no field changes.
    forged = _tamper(genuine, **TAMPERING[name])
    if name == "header-reencoded-same-fields":
        h, p, s = genuine.split(".")
        header = json.loads(base64.urlsafe_b64decode(h + "=="))
        forged = f"{b64url(json.dumps(header, indent=1).encode())}.{p}.{s}"
    assert forged != genuine
    attempt(gateway, forged, alice, secrets)


# -- claims, signed by auth's own key -------------------------------------------------------


def _claim_cases(now: int) -> dict[str, dict[str, Any]]:
    return {
        "expired": {"iat": now - 700, "nbf": now - 700, "exp": now - 100},
        "not-yet-valid": {"nbf": now + 300},
        "issued-in-the-future": {"iat": now + 300, "nbf": now, "exp": now + 600},
        "lifetime-over-the-maximum": {"exp": now + 3600},
        "lifetime-a-year": {"iat": now - 60, "exp": now + 365 * 86400},
        "wrong-issuer": {"iss": "http://evil.example"},
        "issuer-with-trailing-slash": {"iss": "ISSUER/"},
        "no-issuer": {"iss": _DROP},
        "wrong-audience": {"aud": "another-api"},
        "audience-list-without-passgate": {"aud": ["another-api", "passgate-admin"]},
        "no-audience": {"aud": _DROP},
        "no-expiry": {"exp": _DROP},
        "no-subject": {"sub": _DROP},
        "no-token-id": {"jti": _DROP},
        "expiry-as-text": {"exp": str(now + 600)},
        "expiry-as-bool": {"exp": True},
        "subject-with-crlf": {"sub": "x\r\nX-User-Scopes: admin"},
        "subject-not-text": {"sub": 12345},
        "scope-not-text": {"scope": ["admin"]},
    }


@pytest.mark.parametrize("case", list(_claim_cases(0)))
def test_a_token_with_a_bad_claim_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, case: str
) -> None:
    key, kid = signing_key
    changes = _claim_cases(int(time.time()))[case]
    if changes.get("iss") == "ISSUER/":
        changes["iss"] = stack.issuer + "/"
    token = rs256({"typ": "at+jwt", "kid": kid}, claims(stack, alice, **changes), key)
    attempt(gateway, token, alice, secrets)


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt+x", "JWS", "", None, "id_token+jwt", "application/jwt"])
def test_a_token_of_another_type_is_refused(
    gateway: Client, stack: Stack, alice: User, secrets: Secrets, signing_key, typ
) -> None:
    """RFC 9068 section 4: an ID token or any other JWT signed by the same key is not an
    access token."""
    key, kid = signing_key
    header: dict[str, Any] = {"kid": kid}
    if typ is not None:
        header["typ"] = typ
    attempt(gateway, rs256(header, claims(stack, alice), key), alice, secrets)


# -- where the token travels ------------------------------------------------------------------


TRANSPORTS = {
    "query-access_token": lambda t: ("/orders?access_token=" + t, {}, None),
    "query-token": lambda t: ("/orders?token=" + t, {}, None),
    "cookie-access_token": lambda t: ("/orders", {"Cookie": f"access_token={t}"}, None),
    "cookie-token": lambda t: ("/orders", {"Cookie": f"token={t}; session={t}"}, None),
    "form-body": lambda t: (
        "/orders",
        {"Content-Type": "application/x-www-form-urlencoded"},
        f"access_token={t}",
    ),
    "basic-scheme": lambda t: ("/orders", {"Authorization": f"Basic {t}"}, None),
    "no-scheme": lambda t: ("/orders", {"Authorization": t}, None),
    "x-access-token-header": lambda t: ("/orders", {"X-Access-Token": t}, None),
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_genuine_token_anywhere_but_the_authorization_header_is_refused(
    gateway: Client, alice: User, secrets: Secrets, transport: str
) -> None:
    """RFC 6750 sections 2.2 and 2.3 are not supported: no token in a query or a cookie."""
    before = order_count(gateway, alice)
    target, headers, form = TRANSPORTS[transport](alice.access_token)
    if form is not None:
        reply = gateway.post(target, headers=headers, body=form)
    else:
        reply = gateway.post(target, headers={**headers, "Content-Type": "application/json"},
                             body=json.dumps(ORDER))
    assert_refused(reply, 401, secrets=secrets, sent=[alice.access_token])
    assert 'error="invalid_token"' not in reply.headers["WWW-Authenticate"]  # no token seen
    assert order_count(gateway, alice) == before


def test_two_authorization_headers_are_refused(gateway: Client, alice: User, bob: User, secrets: Secrets) -> None:
    before = order_count(gateway, alice)
    reply = gateway.post(
        "/orders",
        headers=[("Authorization", f"Bearer {bob.access_token}"),
                 ("Authorization", f"Bearer {alice.access_token}"),
                 ("Content-Type", "application/json")],
        body=json.dumps(ORDER),
    )
    assert_refused(reply, 401, secrets=secrets)
    assert order_count(gateway, alice) == before

