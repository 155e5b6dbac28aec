"""Turn the raw figures of a run (the JSON document) into issue 14's targets and markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench import capacity
from bench.report import Target, fmt, markdown_table, targets_table
from bench.scenarios import cache_off, event_loop, floor, gateway, haproxy, nginx, orders, scaling, session, storm

# Run names, as the scenario modules name their runs.
DIRECT_ORDERS = orders.DIRECT
GATEWAY_ORDERS = orders.THROUGH
DIRECT = gateway.DIRECT
GATEWAY = gateway.THROUGH
CACHE_OFF = cache_off.RUN
NGINX = nginx.RUN
SESSION = session.RUN
FLOOR = floor.RUN
HAPROXY = haproxy.RUN
ASYNCIO_RUN = event_loop.ASYNCIO_RUN
DEFAULT_AGAIN_RUN = event_loop.DEFAULT_AGAIN_RUN
ONE, TWO, ONE_AGAIN = scaling.ONE, scaling.TWO, scaling.ONE_AGAIN
NO_STORM = storm.NO_STORM_RUN
STORM_PREFIX = storm.STORM_RUN_PREFIX
BACKENDS = ("orders", "backend")


def _run(data: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return data.get("runs", {}).get(name)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _rps(data: Mapping[str, Any], name: str) -> float | None:
    run = _run(data, name)
    return run["throughput_rps"] if run else None


def _cpu(data: Mapping[str, Any], name: str, label: str) -> float | None:
    run = _run(data, name)
    return run["cpu_us_per_request"].get(label) if run else None


def _p99(data: Mapping[str, Any], name: str) -> float | None:
    run = _run(data, name)
    return run["latency_us"]["p99"] / 1000 if run else None


def storm_runs(data: Mapping[str, Any]) -> list[str]:
    return [name for name in data.get("runs", {}) if name.startswith(STORM_PREFIX)]


def memory_figures(data: Mapping[str, Any]) -> dict[str, float] | None:
    memory = data.get("extra", {}).get("memory")
    if not memory or len(memory["steps"]) < 2:
        return None
    steps = memory["steps"]
    growth = steps[-1]["rss_mb"] - steps[0]["rss_mb"]
    return {"growth_mb": growth, "bound_mb": memory.get("bound_mb", 0.0)}


def storm_logins(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The judged storm variant (the first: auth on the gateway's core, the worst case)."""
    storms = data.get("extra", {}).get("storm", {}).get("variants") or {}
    return next(iter(storms.values()), None)


def scaling_factor(data: Mapping[str, Any]) -> float | None:
    """The larger of the two processes' CPU per request ÷ one process's."""
    each = data.get("extra", {}).get("scaling", {}).get("each_of_two_over_one")
    return max(each.values()) if each else None


def targets(data: Mapping[str, Any]) -> list[Target]:
    """Every target of issue 14, in its order, with this run's figure."""
    storms = storm_runs(data)
    storm = storms[0] if storms else None
    memory = memory_figures(data)
    logins = storm_logins(data)
    gateway = _cpu(data, GATEWAY, "gateway")
    postgres = data.get("extra", {}).get("backends", {}) or {}
    bucket = data.get("extra", {}).get("memory", {}).get("bucket_bytes")
    return [
        Target("gateway CPU per authenticated proxied request ÷ bare aiohttp proxy's",
               _ratio(gateway, _cpu(data, FLOOR, "aiohttp proxy")), 0.6, False, "×",
               "bare backend behind both, gateway saturated", stretch=0.45),
        Target("gateway CPU per request ÷ HAProxy's (jwt_verify RS256 on every request)",
               _ratio(gateway, _cpu(data, HAPROXY, "haproxy")), 1.5, False, "×",
               "same backend; HAProxy checked once: valid token 200, tampered 401", stretch=1.0),
        Target("through-gateway ÷ direct throughput, bare backend",
               _ratio(_rps(data, GATEWAY), _rps(data, DIRECT)), 0.25, True, "×",
               "the gateway is the bottleneck"),
        Target("orders CPU per GET /orders ÷ bare backend's (SQLite)",
               _ratio(_cpu(data, DIRECT_ORDERS, "orders"), _cpu(data, DIRECT, "backend")), 8.0, False, "×",
               "both direct, 5 orders, same body"),
        Target("orders CPU per GET /orders on PostgreSQL",
               postgres.get("orders_list_cpu_us_postgresql"), None, False, " µs",
               "direct to the orders service, 5 orders (bench/backends.py)"),
        Target("whole system: gateway → orders throughput ÷ direct to the bare backend",
               _ratio(_rps(data, GATEWAY_ORDERS), _rps(data, DIRECT)), 0.08, True, "×",
               "authenticated GET /orders through the gateway to the real orders service"),
        Target("session-lookup proxy CPU ÷ gateway CPU per request (the seed's claim)",
               _ratio(_cpu(data, SESSION, "session proxy"), gateway), 1.5, True, "×",
               "same proxy path, a Redis GET per request instead of the cached JWT check"),
        Target("storm logins answered 200",
               logins["logins_ok"] / max(1, logins["logins_ok"] + logins["logins_failed"]) if logins else None,
               0.95, True, "", "50 clients logging in back to back, auth on the gateway's core"),
        Target("storm logins answered at or after the login route's timeout",
               logins.get("logins_after_route_timeout") if logins else None, 0, False, "",
               f"route timeout {fmt(logins.get('route_timeout_s')) if logins else 'n/a'} s"),
        Target("GET p99 during a 50-login storm ÷ without",
               _ratio(_p99(data, storm), _p99(data, NO_STORM)) if storm else None, 2.0, False, "×",
               f"storm run: {storm.removeprefix(STORM_PREFIX).strip() if storm else 'n/a'}"),
        Target("gateway RSS growth after all distinct tokens, within the bound",
               memory["growth_mb"] if memory else None,
               memory["bound_mb"] if memory else None, False, " MB",
               "bound: token cache + rate-limit buckets at their caps (see Memory)"),
        Target("per-caller rate-limit state", bucket, 124, False, " B",
               "half of the 248 B measured before issue 14; tracemalloc on real keys"),
        Target("each of two SO_REUSEPORT gateway processes' CPU per request ÷ one's",
               scaling_factor(data), 1.1, False, "×",
               "the larger of the two; both layouts on the core under test"),
    ]


def runs_table(data: Mapping[str, Any]) -> str:
    rows = []
    for name, run in data.get("runs", {}).items():
        cpu = run["cpu_us_per_request"]
        kernel = run.get("kernel_us_per_request", {})  # runs recorded before it was kept have none
        proxy = next((k for k in cpu if k not in (*BACKENDS, "auth") and not k.startswith("redis")), None)
        backend = next((k for k in BACKENDS if k in cpu), None)
        extra = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items() if k not in (proxy, backend))
        direct = _rps(data, DIRECT_ORDERS if backend == "orders" else DIRECT)
        rows.append((
            name,
            run["throughput_rps"],
            _ratio(run["throughput_rps"], direct),
            run["latency_us"]["p50"] / 1000,
            run["latency_us"]["p99"] / 1000,
            run["errors"],
            f"{proxy} {cpu[proxy]:.0f}" if proxy else "",
            kernel.get(proxy) if proxy else None,
            f"{backend} {cpu[backend]:.0f}" if backend else "",
            extra,
            run["rss_mb"].get(proxy) if proxy else None,
            run["foreign_cpu_on_sut_core_pct"],
        ))
    return markdown_table(
        ["run", "req/s", "÷ direct (same backend)", "p50 ms", "p99 ms", "errors", "proxy CPU µs/req",
         "of it in the kernel", "backend CPU µs/req", "other CPU µs/req", "proxy RSS MB", "others on SUT core %"],
        rows,
    )


def default_loop_cpu(data: Mapping[str, Any]) -> float | None:
    """The gateway's CPU per request on the default loop: the mean of the run before the
    asyncio one and the run after it (the first alone when the second is missing)."""
    found = [v for v in (_cpu(data, GATEWAY, "gateway"), _cpu(data, DEFAULT_AGAIN_RUN, "gateway")) if v]
    return sum(found) / len(found) if found else None


def derived_table(data: Mapping[str, Any]) -> str:
    on, off = _cpu(data, GATEWAY, "gateway"), _cpu(data, CACHE_OFF, "gateway")
    nginx = _cpu(data, NGINX, "nginx")
    session_cpu = _cpu(data, SESSION, "session proxy")
    sessions = data.get("extra", {}).get("session", {})
    rows = [
        ("throughput, token cache off ÷ on", _ratio(_rps(data, CACHE_OFF), _rps(data, GATEWAY))),
        ("signature verification cost (CPU µs/req, cache off − on)",
         off - on if off is not None and on is not None else None),
        ("gateway CPU per request ÷ nginx's", _ratio(on, nginx)),
        ("HAProxy CPU µs/req (RS256 verified on every request)", _cpu(data, HAPROXY, "haproxy")),
        ("gateway CPU per request ÷ HAProxy's", _ratio(on, _cpu(data, HAPROXY, "haproxy"))),
        ("gateway CPU per request on asyncio's loop ÷ on the default loop (uvloop when installed; "
         "mean of the runs before and after)", _ratio(_cpu(data, ASYNCIO_RUN, "gateway"), default_loop_cpu(data))),
        ("gateway CPU per request ÷ a bare aiohttp proxy's", _ratio(on, _cpu(data, FLOOR, "aiohttp proxy"))),
        ("bare aiohttp proxy CPU per request ÷ nginx's", _ratio(_cpu(data, FLOOR, "aiohttp proxy"), nginx)),
        ("gateway throughput ÷ nginx's", _ratio(_rps(data, GATEWAY), _rps(data, NGINX))),
        ("nginx throughput ÷ direct", _ratio(_rps(data, NGINX), _rps(data, DIRECT))),
        ("session proxy CPU µs/req (its process only)", session_cpu),
        ("session proxy CPU ÷ gateway CPU per request (the noise-robust form of the 1.5× target)",
         _ratio(session_cpu, on)),
        ("session store memory per logged-in user (Redis, bytes)",
         sessions.get("used_memory_delta_bytes_per_session")),
        ("  (Redis MEMORY USAGE of one session key, bytes)", sessions.get("memory_usage_bytes_per_session")),
        ("gateway session state per logged-in user (bytes)", 0),
        ("gateway per-caller rate-limit bucket (bytes; at most 100,000 kept, oldest forgotten)",
         data.get("extra", {}).get("memory", {}).get("bucket_bytes")),
    ]
    return markdown_table(["derived figure", "value"], rows)


def memory_table(data: Mapping[str, Any]) -> str:
    memory = data.get("extra", {}).get("memory")
    if not memory:
        return "(not measured)"
    rows = []
    for step in memory["steps"]:
        cache = step.get("cache", {})
        rows.append((f"{step['tokens']:,}" if step["tokens"] else "before (warm)",
                     step.get("sent", ""), step.get("errors", ""), step["rss_mb"],
                     step["rss_mb"] - memory["steps"][0]["rss_mb"],
                     cache.get("hit", ""), cache.get("miss", "")))
    table = markdown_table(
        ["distinct tokens sent (cumulative steps)", "sent", "errors", "RSS MB", "growth MB",
         "cache hits (total)", "cache misses (total)"], rows)
    bound = (
        f"Bound: token cache {memory['cache_size']:,} entries × {memory['cache_entry_bytes']:,.0f} B"
        f" = {memory['cache_bound_mb']:.1f} MB, plus rate-limit buckets "
        f"{memory['bucket_cap']:,} × {memory['bucket_bytes']:,.0f} B = {memory['bucket_bound_mb']:.1f} MB"
        f" (both caps are fixed in the gateway: PASSGATE_TOKEN_CACHE_SIZE and MAX_MEMORY_BUCKETS;"
        f" sizes measured with tracemalloc on real tokens), plus {memory['slack_mb']:.0f} MB allocator slack:"
        f" {memory['bound_mb']:.1f} MB. Tokens are {memory['token_bytes']:.0f} characters."
        if "cache_entry_bytes" in memory else ""
    )
    return table + ("\n\n" + bound if bound else "")


def tokens_section(data: Mapping[str, Any]) -> str:
    """Item 9: bytes per request, the claims and their readers, the algorithms compared."""
    tokens = data.get("extra", {}).get("tokens")
    if not tokens:
        return "(not measured)"
    wire = markdown_table(
        ["credential", "characters", "Authorization line bytes", "whole GET /orders request bytes"],
        [("access token (auth's, as issued)", tokens["token_chars"], tokens["token_line_bytes"],
          tokens["token_request_bytes"]),
         ("session id (32 random bytes)", tokens["session_id_chars"], tokens["session_line_bytes"],
          tokens["session_request_bytes"])])
    claims = markdown_table(
        ["claim", "JSON bytes", "read by"],
        [(f"header {name} = {entry['value']}", "", entry["reader"]) for name, entry in tokens["header"].items()]
        + [(c["claim"], c["json_bytes"], c["reader"]) for c in tokens["claims"]])
    algorithms = markdown_table(
        ["algorithm", "token characters", "signature characters", "PyJWT verify on a cache miss, CPU µs"],
        [(alg, f["token_chars"], f["signature_chars"], f["verify_us"]) for alg, f in tokens["algorithms"].items()])
    extra = tokens["token_request_bytes"] - tokens["session_request_bytes"]
    return (f"An authenticated request carries {fmt(extra)} bytes more with the token than with a "
            f"session id ({fmt(tokens['token_request_bytes'] / tokens['session_request_bytes'])}× the "
            f"request).\n\n{wire}\n\n{claims}\n\n{algorithms}")


def scaling_section(data: Mapping[str, Any]) -> str:
    scaling = data.get("extra", {}).get("scaling")
    if not scaling or ONE not in scaling or TWO not in scaling:
        return "(not measured)"
    rows = []
    for layout in (ONE, TWO, ONE_AGAIN):
        for name, cpu in scaling.get(layout, {}).get("cpu_us_per_request", {}).items():
            rows.append((layout, name, scaling[layout]["requests"][name], cpu,
                         scaling.get("each_of_two_over_one", {}).get(name) if layout == TWO else None))
    return markdown_table(["layout", "process", "requests it answered", "CPU µs/req", "÷ one process (mean of its two runs)"], rows)


def capacity_figures(data: Mapping[str, Any]) -> dict[str, float | None]:
    return {
        "gateway_us": _cpu(data, GATEWAY, "gateway"),
        "scaling_factor": scaling_factor(data),
        "haproxy_us": _cpu(data, HAPROXY, "haproxy"),
        "nginx_us": _cpu(data, NGINX, "nginx"),
        "orders_us": _cpu(data, DIRECT_ORDERS, "orders"),
        "orders_pg_us": (data.get("extra", {}).get("backends") or {}).get("orders_list_cpu_us_postgresql"),
    }


def capacity_section(data: Mapping[str, Any]) -> str:
    rows = capacity.model(capacity.tiers_from_run(capacity_figures(data)))
    return capacity.explain(rows) if rows else "(no per-request costs measured)"


def profile_section(data: Mapping[str, Any]) -> str:
    profile = data.get("extra", {}).get("profile", {}).get("gateway")
    if not profile:
        return "(not profiled)"
    areas = markdown_table(["area (innermost non-stdlib frame)", "% of busy samples"],
                           [(a["name"], a["pct"]) for a in profile["by_area"]])
    selfs = markdown_table(["function (self time)", "%"],
                           [(a["name"], a["pct"]) for a in profile["top_self"][:12]])
    inclusive = markdown_table(["function (inclusive)", "%"],
                               [(a["name"], a["pct"]) for a in profile["top_inclusive"]
                                if "/asyncio/" not in a["name"] and "asyncio" not in a["name"].split("(")[-1]][:20])
    return f"{profile['samples']:,} samples.\n\n{areas}\n\n{inclusive}\n\n{selfs}"


def render(data: Mapping[str, Any]) -> str:
    machine = data.get("machine", {})
    noise = machine.get("noise_before", {})
    lines = [
        f"# Passgate bench, {data.get('started', '?')}",
        "",
        f"Loopback, {machine.get('cpus', '?')} CPUs, {data.get('placement', '?')}. "
        f"Load generator: {data.get('load_generator', '?')}, {data.get('concurrency', '?')} connections, "
        f"{fmt(data.get('warmup_s'))} s warm-up + {fmt(data.get('duration_s'))} s measured per run. "
        f"CPU per request is utime+stime from /proc/<pid>/stat over the measured window ÷ requests; "
        f"RSS from /proc/<pid>/status. Machine before start: cores busy {noise.get('core_busy_pct', '?')} %, "
        f"load average {noise.get('load_average', '?')}. Wall time {fmt(data.get('wall_seconds'))} s.",
        "",
        "## Targets (issue 14)",
        "",
        targets_table(targets(data)),
        "",
        "## Runs",
        "",
        runs_table(data),
        "",
        derived_table(data),
        "",
        "## Memory after distinct tokens",
        "",
        memory_table(data),
        "",
    ]
    storm = data.get("extra", {}).get("storm", {}).get("variants")
    if storm:
        busy = data.get("extra", {}).get("storm", {}).get("auth_busy_after_storm_s")
        lines += ["## Login storm", "",
                  "50 clients each log in again as soon as their last login answered, through the gateway, "
                  "for the whole measured window; GETs as in the other runs.", "",
                  markdown_table(["placement of auth", "logins ok", "failed", "answers", "login p50 ms",
                                  "login max ms", "answered at or after the route timeout"],
                                 [(k, v["logins_ok"], v["logins_failed"],
                                   ", ".join(f"{s}: {n}" for s, n in v.get("statuses", {}).items()),
                                   v["login_p50_ms"], v["login_max_ms"], v.get("logins_after_route_timeout"))
                                  for k, v in storm.items()]), ""]
        if busy is not None:
            lines += [f"Auth went on using CPU for {fmt(busy)} s after the storm stopped "
                      "(hashing logins whose clients had already given up).", ""]
    lines += ["## Bytes per request and the token's signature algorithm", "", tokens_section(data), "",
              "## Two gateway processes against one (CPU per request of each)", "", scaling_section(data), "",
              "## Replicas per 10,000 req/s (model from this run's costs)", "", capacity_section(data), ""]
    lines += ["## Where the gateway's time goes (py-spy)", "", profile_section(data), ""]
    orders_profile = data.get("extra", {}).get("profile", {}).get("orders")
    if orders_profile:
        lines += ["## Where the orders backend's time goes (py-spy, direct load)", "",
                  markdown_table(["area", "%"], [(a["name"], a["pct"]) for a in orders_profile["by_area"]]), "",
                  markdown_table(["function (inclusive)", "%"],
                                 [(a["name"], a["pct"]) for a in orders_profile["top_inclusive"]
                                  if "asyncio" not in a["name"]][:12]), ""]
    if data.get("notes") or data.get("errors"):
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in data.get("notes", [])]
        lines += [f"- scenario {name} failed: {error}" for name, error in data.get("errors", {}).items()]
        lines.append("")
    return "\n".join(lines)
