"""The bench's newer helpers, without load: the HAProxy peer's config (run for real against a
local backend when haproxy is installed), the token cost figures, the replica model, the
metrics reader, the event-loop check and the scaling arithmetic."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import capacity, procstat, token_costs
from bench.haproxy import HAProxy, find_haproxy, public_key_pem, render_config, tampered, token_kid
from bench.prometheus import sample_total
from bench.run import PACKAGED_ROUTES
from bench.scenarios.storm import LoginStats, login_route_timeout
from bench.scenarios.scaling import ONE, ONE_AGAIN, TWO, each_over_one, per_process
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT

ISSUER = "http://127.0.0.1:8080"
AUDIENCE = "passgate"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key: rsa.RSAPrivateKey, *, exp_in: int = 600, aud: str = AUDIENCE) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "sub": str(uuid.uuid4()), "iat": now, "nbf": now,
              "exp": now + exp_in, "jti": str(uuid.uuid4()), "scope": "orders:read users:read",
              "client_id": "passgate"}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1", "typ": "at+jwt"})


def _jwks(key: rsa.RSAPrivateKey) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [jwk | {"kid": "k1", "alg": "RS256", "use": "sig"}]}


def test_tampered_token_differs_only_in_its_signature_and_fails_verification(signing_key) -> None:
    token = _token(signing_key)
    bad = tampered(token)
    assert bad != token and bad.rsplit(".", 1)[0] == token.rsplit(".", 1)[0]
    assert token_kid(token) == "k1"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(bad, signing_key.public_key(), algorithms=["RS256"], audience=AUDIENCE)


def test_public_key_pem_is_the_jwks_key(signing_key) -> None:
    pem = public_key_pem(_jwks(signing_key), "k1")
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    # The PEM verifies what the private key signed: it is that key's public half.
    jwt.decode(_token(signing_key), pem, algorithms=["RS256"], audience=AUDIENCE)
    with pytest.raises(LookupError):
        public_key_pem(_jwks(signing_key), "other")


def test_haproxy_config_verifies_every_request_and_reuses_connections(tmp_path: Path) -> None:
    config = render_config(tmp_path, port=8000, upstream="http://127.0.0.1:9000/", key_file=tmp_path / "k.pem",
                           issuer=ISSUER, audience=AUDIENCE)
    assert "http_auth_bearer,jwt_header_query('$.alg')" in config
    assert f'jwt_verify(txn.alg,"{tmp_path / "k.pem"}") -m int 1' in config
    assert "-m str RS256" in config and "http-reuse always" in config
    assert "server bare 127.0.0.1:9000 " in config
    for header in ("X-User-Id", "X-User-Scopes", "X-User-Client-Id", "X-User-Token-Id"):
        assert f"http-request set-header {header} " in config
    assert "http-request del-header Authorization" in config


@pytest.mark.skipif(find_haproxy() is None, reason="haproxy is not installed (make bench installs it)")
async def test_haproxy_peer_passes_a_valid_token_and_refuses_bad_ones(aiohttp_server, tmp_path, signing_key) -> None:
    seen: list = []  # header multidicts (HAProxy sends names lower-cased)

    async def backend(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", backend)
    server = await aiohttp_server(app)
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(public_key_pem(_jwks(signing_key), "k1"))
    proxy = HAProxy(find_haproxy() or "", tmp_path, free_port())
    config = render_config(tmp_path, port=proxy.port, upstream=f"http://127.0.0.1:{server.port}",
                           key_file=key_file, issuer=ISSUER, audience=AUDIENCE)
    await asyncio.to_thread(proxy.start, config)
    try:
        token = _token(signing_key)
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cases = {
            "valid": token,
            "tampered": tampered(token),
            "expired": _token(signing_key, exp_in=-60),
            "other audience": _token(signing_key, aud="someone-else"),
            "other key": _token(other_key),
        }
        statuses = {}
        async with aiohttp.ClientSession() as session:
            for label, credential in cases.items():
                async with session.get(f"{proxy.url}/orders", headers={"Authorization": f"Bearer {credential}"}) as r:
                    statuses[label] = r.status
            async with session.get(f"{proxy.url}/orders") as r:
                statuses["none"] = r.status
    finally:
        await asyncio.to_thread(proxy.stop)
    assert statuses == {"valid": 200, "tampered": 401, "expired": 401, "other audience": 401,
                        "other key": 401, "none": 401}
    # Only the valid request reached the backend, with the identity and no token.
    assert len(seen) == 1
    claims = jwt.decode(token, options={"verify_signature": False})
    assert seen[0]["X-User-Id"] == claims["sub"] and seen[0]["X-User-Scopes"] == claims["scope"]
    assert "Authorization" not in seen[0]


def test_token_figures_count_wire_bytes_and_claims(signing_key) -> None:
    token = _token(signing_key)
    assert token_costs.authorization_line("abc") == b"Authorization: Bearer abc\r\n"
    assert token_costs.request_bytes("/orders", "h:1", "abc") == len(
        b"GET /orders HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer abc\r\n\r\n")
    header, claims, signature_chars = token_costs.token_parts(token)
    assert header["kid"] == "k1" and claims["aud"] == AUDIENCE and signature_chars == 342
    sizes = {c["claim"]: c for c in token_costs.claim_sizes(claims)}
    assert sizes["aud"]["json_bytes"] == len('"aud":"passgate",')
    assert set(sizes) == set(claims) and all(c["reader"] != "nobody known" for c in sizes.values())
    assert token_costs.claim_sizes({"extra": 1})[0]["reader"] == "nobody known"


def test_algorithm_costs_resign_the_same_claims(signing_key) -> None:
    token = _token(signing_key)
    costs = token_costs.algorithm_costs(token, audience=AUDIENCE, rounds=1, min_seconds=0.0)
    assert set(costs) == {"RS256", "ES256", "EdDSA"}
    # RSA-2048 signatures are 256 bytes, P-256 and Ed25519 ones 64: base64url 342 and 86.
    assert costs["RS256"]["signature_chars"] == 342
    assert costs["ES256"]["signature_chars"] == costs["EdDSA"]["signature_chars"] == 86
    assert costs["ES256"]["token_chars"] == len(token) - 342 + 86 + len("ES256") - len("RS256")
    assert all(c["verify_us"] > 0 for c in costs.values())
    figures = token_costs.measure(token, audience=AUDIENCE, rounds=1, min_seconds=0.0)
    assert figures.token_request_bytes - figures.session_request_bytes == len(token) - figures.session_id_chars


def test_replica_model_arithmetic() -> None:
    tiers = capacity.tiers_from_run({"gateway_us": 50.0, "scaling_factor": 1.05, "orders_us": 140.0,
                                     "haproxy_us": None})
    rows = {r["tier"].split(" ")[0]: r for r in capacity.model(tiers, rate=10_000, pod_cpu=1.0, utilisation=0.7)}
    assert set(rows) == {"gateway", "orders"}
    # 10,000 × 50 µs × 1.05 = 0.525 cores → ceil(0.525 / 0.7) = 1 replica.
    assert rows["gateway"]["cores"] == pytest.approx(0.525) and rows["gateway"]["replicas"] == 1
    # 10,000 × 140 µs = 1.4 cores → ceil(1.4 / 0.7) = 2 replicas.
    assert rows["orders"]["cores"] == pytest.approx(1.4) and rows["orders"]["replicas"] == 2
    # A factor below 1 (noise) never makes a process cheaper than measured alone.
    assert capacity.tiers_from_run({"gateway_us": 50.0, "scaling_factor": 0.9})[0].scaling_factor == 1.0
    text = capacity.explain(capacity.model(tiers))
    assert "Replicas per 10,000 req/s" in text and "→ 2 replica(s)" in text


def test_metrics_text_sums_a_sample_across_labels() -> None:
    text = (
        "# HELP http_server_requests HTTP requests answered.\n"
        "# TYPE http_server_requests counter\n"
        'http_server_requests_total{route="/orders",method="GET",status_class="2xx"} 120.0\n'
        'http_server_requests_total{route="/orders",method="GET",status_class="4xx"} 3.0\n'
        'http_server_requests_created{route="/orders",method="GET",status_class="2xx"} 1.7e9\n'
    )
    assert sample_total(text, "http_server_requests_total") == 123.0
    assert sample_total(text, "http_server_requests_total", {"status_class": "2xx"}) == 120.0


def test_each_process_cpu_per_request() -> None:
    assert per_process({"a": 0.5, "b": 0.3}, {"a": 5000, "b": 0}) == {"a": 100.0}


def test_each_of_two_is_held_against_the_mean_of_the_single_runs() -> None:
    figures = {
        ONE: {"cpu_us_per_request": {"gateway 1": 100.0}},
        TWO: {"cpu_us_per_request": {"gateway 1": 99.0, "gateway 2": 121.0}},
        ONE_AGAIN: {"cpu_us_per_request": {"gateway 1": 120.0}},
    }
    assert each_over_one(figures) == {"gateway 1": 0.9, "gateway 2": 1.1}
    del figures[ONE_AGAIN]  # a run cut short: the first alone
    assert each_over_one(figures)["gateway 2"] == 1.21


def test_uvloop_is_found_in_the_memory_map() -> None:
    maps = ("7f00-7f10 r-xp 00000000 08:01 1 /venv/lib/python3.11/site-packages/uvloop/loop.cpython-311.so\n"
            "7f10-7f20 rw-p 00000000 00:00 0 [heap]\n")
    assert procstat.maps_name_shared_object(maps, "/uvloop/loop.")
    assert not procstat.maps_name_shared_object("7f10-7f20 rw-p 00000000 00:00 0 [heap]\n", "/uvloop/loop.")
    # This test process runs no event loop from uvloop unless pytest's plugin chose it.
    assert isinstance(procstat.runs_uvloop(os.getpid()), bool)


def test_login_timeout_is_the_route_that_serves_login() -> None:
    # POST /auth/login falls to the `/auth/*` route, whose timeout is the file's default.
    assert login_route_timeout(PACKAGED_ROUTES) == 10.0


def test_login_stats_count_answers_and_late_logins() -> None:
    stats = LoginStats()
    for status, seconds in (("200", 0.5), ("200", 1.5), ("503", 0.01), ("504", 10.2), ("ClientOSError", 0.1)):
        stats.add(status, seconds)
    summary = stats.summary(route_timeout=10.0)
    assert (summary["logins_ok"], summary["logins_failed"]) == (2, 3)
    assert summary["logins_after_route_timeout"] == 1
    assert summary["login_p50_ms"] == 500.0 and summary["login_max_ms"] == 10200.0
    assert summary["statuses"] == {"200": 2, "503": 1, "504": 1, "ClientOSError": 1}


def test_scenario_sequence_names_every_module_once() -> None:
    from bench.run import SCENARIO_NAMES

    assert len(set(SCENARIO_NAMES)) == len(SCENARIO_NAMES)
    assert SCENARIO_NAMES[-1] == "storm" and "backends" in SCENARIO_NAMES
    assert SCENARIO_NAMES.index("event-loop") == SCENARIO_NAMES.index("gateway") + 1


def test_retry_after_is_read_bounded_and_defaulted() -> None:
    from bench.run import retry_after_seconds

    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds(None) == 1.0 and retry_after_seconds("soon") == 1.0
    assert retry_after_seconds("3600") == 10.0 and retry_after_seconds("-2") == 0.0


@pytest.mark.parametrize(("server", "loop"), [("application", "asyncio"), ("low-level", "uvloop")])
async def test_the_bare_backend_answers_the_same_from_each_server_and_loop(tmp_path: Path, server: str,
                                                                           loop: str) -> None:
    """bench.instructions --backend counts each of aiohttp's layers alone: every variant must
    answer as the bench's bare backend does, or the counts compare different work."""
    body = tmp_path / "body.json"
    body.write_bytes(b'{"orders": [], "next": null}')
    port = free_port()
    backend = ManagedProcess(f"stub-{server}", ["-m", "bench.stub_backend", "--port", str(port), "--body-file",
                                                str(body), "--server", server, "--loop", loop],
                             {}, f"http://127.0.0.1:{port}/readyz", tmp_path / "stub.log", ROOT)
    backend.start()
    try:
        await asyncio.to_thread(backend.wait_ready, 30)
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/orders") as answer:
            assert answer.status == 200 and answer.content_type == "application/json"
            assert await answer.read() == body.read_bytes()
        assert (loop == "uvloop") == procstat.runs_uvloop(backend.pid)
    finally:
        backend.stop()
