"""Turn the raw figures of a run (the JSON document) into issue 9's targets and markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.report import Target, fmt, markdown_table, targets_table

# Run names (bench.run): the orders backend pair, then everything on the bare backend.
DIRECT_ORDERS = "direct to orders"
GATEWAY_ORDERS = "gateway → orders"
DIRECT = "direct to bare backend"
GATEWAY = "gateway → bare"
CACHE_OFF = "gateway → bare, token cache off"
NGINX = "nginx → bare"
SESSION = "session lookup (Redis) → bare"
FLOOR = "bare aiohttp proxy → bare"
BACKENDS = ("orders", "backend")
ONE = "1 gateway process (unpinned)"
TWO = "2 gateway processes, SO_REUSEPORT (unpinned)"
NO_STORM = "GETs, no login storm"
STORM_PREFIX = "GETs during a"


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


def targets(data: Mapping[str, Any]) -> list[Target]:
    storms = storm_runs(data)
    storm = storms[0] if storms else None
    memory = memory_figures(data)
    found = [
        Target("through-gateway throughput ÷ direct, orders backend (token cache on)",
               _ratio(_rps(data, GATEWAY_ORDERS), _rps(data, DIRECT_ORDERS)), 0.5, True, "×",
               "GET /orders through the gateway ÷ straight to the orders service (SQLite)"),
        Target("through-gateway throughput ÷ direct, bare backend (token cache on)",
               _ratio(_rps(data, GATEWAY), _rps(data, DIRECT)), 0.5, True, "×",
               "same request, a bare aiohttp backend returning the same body: the gateway is the bottleneck"),
        Target("gateway CPU per authenticated proxied request (bare backend, gateway saturated)",
               _cpu(data, GATEWAY, "gateway"), 150, False, " µs",
               "gateway process utime+stime ÷ requests, all middlewares and its access log"),
        Target("gateway CPU per authenticated proxied request (orders backend)",
               _cpu(data, GATEWAY_ORDERS, "gateway"), 150, False, " µs",
               "same, at the lower rate the orders backend allows"),
        Target("throughput ÷ session-lookup baseline",
               _ratio(_rps(data, GATEWAY), _rps(data, SESSION)), 1.5, True, "×",
               "same proxy path, Redis GET per request instead of a JWT"),
        Target("gateway RSS growth after all distinct tokens, within the bound",
               memory["growth_mb"] if memory else None,
               memory["bound_mb"] if memory else 0.0, False, " MB",
               "bound: token cache + rate-limit buckets at their caps (see Memory)"),
        Target("GET p99 during a 50-login storm ÷ without",
               _ratio(_p99(data, storm), _p99(data, NO_STORM)) if storm else None, 2.0, False, "×",
               f"storm run: {storm.removeprefix(STORM_PREFIX).strip() if storm else 'n/a'}"),
        Target("two gateway processes ÷ one (SO_REUSEPORT)",
               _ratio(_rps(data, TWO), _rps(data, ONE)), 1.4, True, "×",
               "both unpinned on 2 cores, with the load generator and backend"),
    ]
    return found


def runs_table(data: Mapping[str, Any]) -> str:
    rows = []
    for name, run in data.get("runs", {}).items():
        cpu = run["cpu_us_per_request"]
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
            f"{backend} {cpu[backend]:.0f}" if backend else "",
            extra,
            run["rss_mb"].get(proxy) if proxy else None,
            run["foreign_cpu_on_sut_core_pct"],
        ))
    return markdown_table(
        ["run", "req/s", "÷ direct (same backend)", "p50 ms", "p99 ms", "errors", "proxy CPU µs/req",
         "backend CPU µs/req", "other CPU µs/req", "proxy RSS MB", "others on SUT core %"],
        rows,
    )


def derived_table(data: Mapping[str, Any]) -> str:
    on, off = _cpu(data, GATEWAY, "gateway"), _cpu(data, CACHE_OFF, "gateway")
    nginx = _cpu(data, NGINX, "nginx")
    session_cpu = _cpu(data, SESSION, "session proxy")
    sessions = data.get("extra", {}).get("sessions", {})
    rows = [
        ("throughput, token cache off ÷ on", _ratio(_rps(data, CACHE_OFF), _rps(data, GATEWAY))),
        ("signature verification cost (CPU µs/req, cache off − on)",
         off - on if off is not None and on is not None else None),
        ("gateway CPU per request ÷ nginx's", _ratio(on, nginx)),
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


def profile_section(data: Mapping[str, Any]) -> str:
    profile = data.get("extra", {}).get("profile")
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
        "## Targets (issue 9)",
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
    storm = data.get("extra", {}).get("login_storm")
    if storm:
        busy = data.get("extra", {}).get("auth_busy_after_storm_s")
        lines += ["## Login storm", "",
                  "50 clients each log in again as soon as their last login answered, through the gateway, "
                  "for the whole measured window; GETs as in the other runs.", "",
                  markdown_table(["placement of auth", "logins ok", "failed", "answers", "login p50 ms",
                                  "login max ms"],
                                 [(k, v["logins_ok"], v["logins_failed"],
                                   ", ".join(f"{s}: {n}" for s, n in v.get("statuses", {}).items()),
                                   v["login_p50_ms"], v["login_max_ms"]) for k, v in storm.items()]), ""]
        if busy is not None:
            lines += [f"Auth went on using CPU for {fmt(busy)} s after the storm stopped "
                      "(hashing logins whose clients had already given up).", ""]
    lines += ["## Where the gateway's time goes (py-spy)", "", profile_section(data), ""]
    orders = data.get("extra", {}).get("profile_orders")
    if orders:
        lines += ["## Where the orders backend's time goes (py-spy, direct load)", "",
                  markdown_table(["area", "%"], [(a["name"], a["pct"]) for a in orders["by_area"]]), "",
                  markdown_table(["function (inclusive)", "%"],
                                 [(a["name"], a["pct"]) for a in orders["top_inclusive"]
                                  if "asyncio" not in a["name"]][:12]), ""]
    if data.get("notes") or data.get("errors"):
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in data.get("notes", [])]
        lines += [f"- scenario {name} failed: {error}" for name, error in data.get("errors", {}).items()]
        lines.append("")
    return "\n".join(lines)
