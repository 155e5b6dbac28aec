"""Quick checks of the bench harness (no load is generated): /proc readings, the table,
the summary of a profile, the Python load generator against a tiny local server."""

from __future__ import annotations

import os
import time

import pytest
from aiohttp import web

from bench import procstat
from bench.loadgen import parse_summary
from bench.profile import summarise_raw
from bench.pyload import build_request, run_load
from bench.report import Target, fmt, markdown_table, targets_table
from bench.summary import render, targets


def test_cpu_seconds_of_this_process_grows_with_work() -> None:
    before = procstat.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # bounded: 50 ms of CPU
        pass
    after = procstat.cpu_seconds(os.getpid())
    # 50 ms of CPU shows up, to the clock tick (10 ms), in utime + stime.
    assert after - before >= 0.02


def test_cpu_times_tell_the_kernel_part_from_the_process_own() -> None:
    user0, kernel0 = procstat.cpu_times(os.getpid())
    deadline = time.process_time() + 0.1
    with open("/dev/zero", "rb", buffering=0) as zero:
        while time.process_time() < deadline:  # bounded: 100 ms of CPU, most of it in read(2)
            zero.read(1 << 20)
    user1, kernel1 = procstat.cpu_times(os.getpid())
    # The kernel fills each megabyte; the loop around it costs next to nothing.
    assert kernel1 - kernel0 >= 0.05 and kernel1 - kernel0 > user1 - user0
    assert procstat.group_cpu_times([os.getpid(), 2**22 + 1])[1] >= kernel1  # a gone pid adds nothing


def test_rss_and_tree_of_this_process() -> None:
    assert procstat.rss_bytes(os.getpid()) > 1 << 20
    assert procstat.descendants(os.getpid())[0] == os.getpid()
    assert procstat.parent_pid(os.getpid()) == os.getppid()


def test_markdown_table_formats_numbers_and_escapes_pipes() -> None:
    table = markdown_table(["a", "b"], [("x|y", 1234.5), ("z", 0.123)])
    assert table.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y | 1,234 |",
        "| z | 0.12 |",
    ]
    assert fmt(None) == "n/a" and fmt(12.345) == "12.3" and fmt(100000) == "100,000"


def test_targets_verdicts() -> None:
    rows = targets_table([
        Target("ratio", 0.6, 0.5, True, "×"),
        Target("cpu", 180.0, 150, False, " µs"),
        Target("missing", None, 1.4, True),
    ])
    assert "| ratio | 0.60× | ≥ 0.50× | met |" in rows
    assert "| cpu | 180 µs | ≤ 150 µs | NOT met |" in rows
    assert "not measured" in rows


def _run(rps: float, p99_us: float, cpu: dict[str, float]) -> dict:
    return {"throughput_rps": rps, "errors": 0, "latency_us": {"p50": p99_us / 2, "p99": p99_us},
            "cpu_us_per_request": cpu, "rss_mb": {}, "foreign_cpu_on_sut_core_pct": 1.0}


def test_render_computes_ratios_from_raw_figures() -> None:
    data = {
        "runs": {
            "direct to bare backend": _run(10000, 5000, {"backend": 80}),
            "gateway → bare": _run(5000, 10000, {"gateway": 120, "backend": 80}) | {
                "kernel_us_per_request": {"gateway": 45, "backend": 30}},
            "session lookup (Redis) → bare": _run(2500, 20000, {"session proxy": 200, "backend": 80}),
            "haproxy (jwt_verify RS256) → bare": _run(6000, 8000, {"haproxy": 60, "backend": 80}),
            "bare aiohttp proxy → bare": _run(4000, 12000, {"aiohttp proxy": 300, "backend": 80}),
            "GETs, no login storm": _run(5000, 10000, {"gateway": 120}),
            "GETs during a 50-login storm (x)": _run(4000, 30000, {"gateway": 120}),
        },
        "extra": {
            "storm": {"variants": {"x": {"logins_ok": 96, "logins_failed": 4, "login_p50_ms": 1,
                                         "login_max_ms": 11000, "route_timeout_s": 10.0,
                                         "logins_after_route_timeout": 1, "statuses": {}}}},
            "scaling": {"each_of_two_over_one": {"gateway 1": 1.02, "gateway 2": 1.15}},
        },
    }
    found = {t.name: t for t in targets(data)}
    bare = found["through-gateway ÷ direct throughput, bare backend"]
    assert bare.measured == 0.5 and bare.met
    session = found["session-lookup proxy CPU ÷ gateway CPU per request (the seed's claim)"]
    assert session.measured == 200 / 120 and session.met
    floor = found["gateway CPU per authenticated proxied request ÷ bare aiohttp proxy's"]
    assert floor.measured == 0.4 and floor.verdict == "met, stretch met"
    peer = found["gateway CPU per request ÷ HAProxy's (jwt_verify RS256 on every request)"]
    assert peer.measured == 2.0 and peer.verdict == "NOT met"
    storm = found["GET p99 during a 50-login storm ÷ without"]
    assert storm.measured == 3.0 and storm.met is False
    assert found["storm logins answered 200"].measured == 0.96
    assert found["storm logins answered at or after the login route's timeout"].met is False
    assert found["each of two SO_REUSEPORT gateway processes' CPU per request ÷ one's"].measured == 1.15
    assert found["whole system: gateway → orders throughput ÷ direct to the bare backend"].met is None
    assert found["orders CPU per GET /orders on PostgreSQL"].verdict == "not measured"
    text = render(data)
    assert "## Targets (issue 14)" in text and "| gateway → bare | 5,000 | 0.50 |" in text
    assert "| gateway 120 | 45 | backend 80 |" in text  # the proxy's kernel part beside its CPU
    assert "Replicas per 10,000 req/s" in text


def test_wrk_and_pyload_summaries_parse() -> None:
    assert parse_summary('Running 1s test\nBENCH_JSON {"requests": 3}\n') == {"requests": 3}
    assert parse_summary('{"requests": 4}\n') == {"requests": 4}


def test_profile_summary_groups_by_area() -> None:
    raw = (
        "run (/x/asyncio/base_events.py);handle (/srv/passgate/gateway/app.py);"
        "decode (/venv/site-packages/jwt/api_jwt.py) 3\n"
        "run (/x/asyncio/base_events.py);inc (/venv/site-packages/prometheus_client/metrics.py) 1\n"
    )
    summary = summarise_raw(raw)
    assert summary["samples"] == 4
    areas = {a["name"]: a["pct"] for a in summary["by_area"]}
    assert areas["token verification (PyJWT, cryptography)"] == 75.0


def test_build_request_is_http11() -> None:
    raw = build_request("GET", "http://127.0.0.1:1/orders?limit=5", {"Authorization": "Bearer t"})
    assert raw == b"GET /orders?limit=5 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer t\r\n\r\n"


async def test_python_load_generator_sends_each_request_once(aiohttp_server) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return web.json_response({"ok": True}, status=200 if len(seen) % 2 else 401)

    app = web.Application()
    app.router.add_get("/orders", handler)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/orders"
    requests = [build_request("GET", url, {"Authorization": f"Bearer {i}"}) for i in range(20)]
    result = await run_load(url, concurrency=4, duration=10, requests=requests, once=True)
    assert result["requests"] == 20 and result["http_errors"] == 10
    assert sorted(seen) == sorted(f"Bearer {i}" for i in range(20))


@pytest.mark.redis
async def test_session_store_answers_like_the_token_verifier(redis_url: str) -> None:
    """The session baseline's lookup: a known id gives the stored identity, an unknown one
    the gateway's 401 error."""
    import json
    import secrets

    import redis.asyncio as aioredis

    from bench.session_proxy import SessionStore
    from gateway.verification import TokenError

    client = aioredis.Redis.from_url(redis_url)
    prefix = f"passgate-bench-test:{secrets.token_hex(4)}:"
    try:
        await client.set(prefix + "sid", json.dumps({"sub": "u1", "scope": "orders:read", "client_id": "c"}), ex=60)
        store = SessionStore(client, prefix)
        identity = (await store.verify("sid")).identity
        assert (identity.subject, identity.scopes, identity.client_id) == ("u1", frozenset({"orders:read"}), "c")
        with pytest.raises(TokenError):
            await store.verify("unknown")
    finally:
        await client.delete(prefix + "sid")
        await client.aclose()


async def test_the_backends_scenario_runs_against_services_that_trust_only_assertions() -> None:
    """A few requests of each operation through real service processes: every one answered
    as it should (the scenario raises otherwise), each with a CPU figure and the ratio to
    the bare backend. The services refuse plain identity headers, so this also shows the
    bench vouches for its caller as the gateway does."""
    from bench import backends

    # Enough requests that each window's CPU spans several of /proc's 10 ms ticks.
    result = await backends.measure(requests=600, warmup=20, concurrency=8, rounds=1)
    assert set(result["sqlite"]) == set(backends.OPERATIONS)
    for figure in result["sqlite"].values():
        assert figure["requests"] == 600 and figure["cpu_us_per_request"] > 0
    assert result["bare_backend"]["cpu_us_per_request"] > 0
    assert set(result["ratio_to_bare"]["sqlite"]) == set(backends.OPERATIONS)
