"""Gateway memory after many distinct tokens (distinct users): RSS after each step of
distinct tokens, against the bound the gateway's caps set (verified-token cache and
rate-limit buckets, their entry sizes measured with tracemalloc on real tokens)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from bench import procstat
from bench.prometheus import sample_values, scrape
from bench.scenarios import Figures
from bench.minting import gateway_state_bytes, mint_tokens, write_tokens

if TYPE_CHECKING:
    from bench.run import Bench

SLACK_MB = 10.0  # allocator slack allowed above the caps' live state
CACHE_LOOKUPS = "gateway_token_cache_lookups_total"


async def cache_lookups(ctx: Bench, admin_port: int) -> dict[str, float]:
    """The token cache's lookups so far, by result (hit, miss)."""
    samples = sample_values(await scrape(ctx.session, admin_port), CACHE_LOOKUPS)
    return {dict(labels).get("result", "?"): value for labels, value in samples.items()}


async def send_steps(ctx: Bench, tokens: list[str]) -> list[dict[str, Any]]:
    """Each step's distinct tokens once each through a fresh gateway; RSS after each.
    Unpinned: this scenario measures memory, not speed, and must only be quick."""
    pid = ctx.spawn_gateway("gateway-mem", ctx.bare_gateway_env(), ctx.all_cores)
    url = f"{ctx.stack.process_url('gateway-mem')}/orders"
    admin = int(ctx.stack.process("gateway-mem").env["PASSGATE_ADMIN_PORT"])
    warm = write_tokens(ctx.data_dir / "warm.txt", [ctx.token] * 500)
    await ctx.loadgen.run(url, concurrency=ctx.o.concurrency, duration=30, tokens_file=warm, once=True)
    steps: list[dict[str, Any]] = [{"tokens": 0, "rss_mb": procstat.rss_bytes(pid) / 2**20}]
    offset = 0
    try:
        for count in ctx.o.token_steps:
            path = write_tokens(ctx.data_dir / f"tokens-{count}.txt", tokens[offset : offset + count])
            offset += count
            result = await ctx.loadgen.run(url, concurrency=ctx.o.concurrency, cores=ctx.all_cores,
                                           duration=ctx.o.memory_phase_timeout, tokens_file=path, once=True)
            rss = procstat.rss_bytes(pid) / 2**20
            steps.append({"tokens": count, "sent": result.requests, "errors": result.errors,
                          "throughput_rps": result.throughput, "rss_mb": rss,
                          "cache": await cache_lookups(ctx, admin)})
            print(f"  after {count:,} distinct tokens ({result.requests:,} sent, {result.errors} errors, "
                  f"{result.throughput:,.0f}/s): RSS {rss:.1f} MB", flush=True)
            if result.requests < count:
                ctx.note(f"memory: only {result.requests:,} of {count:,} tokens sent within "
                         f"{ctx.o.memory_phase_timeout:.0f} s")
    finally:
        ctx.stop_process("gateway-mem")
    return steps


def state_bound(gateway_env: dict[str, str], tokens: list[str]) -> dict[str, float]:
    """Entries the gateway can hold at once, whatever the number of users: the token
    cache's cap, and one rate-limit bucket per (route, caller) up to the cap."""
    from gateway.ratelimit import MAX_MEMORY_BUCKETS
    from gateway.settings import GatewaySettings

    cache_size = GatewaySettings.from_env(gateway_env).token_cache_size
    entry, bucket = gateway_state_bytes(tokens[:2000])
    cache_mb = cache_size * entry / 2**20
    bucket_mb = MAX_MEMORY_BUCKETS * bucket / 2**20
    return {
        "cache_size": cache_size,
        "cache_entry_bytes": entry,
        "cache_bound_mb": cache_mb,
        "bucket_cap": MAX_MEMORY_BUCKETS,
        "bucket_bytes": bucket,
        "bucket_bound_mb": bucket_mb,
        "slack_mb": SLACK_MB,
        "bound_mb": cache_mb + bucket_mb + SLACK_MB,
        "token_bytes": sum(len(t) for t in tokens[:1000]) / min(1000, len(tokens)),
    }


async def run(ctx: Bench) -> Figures:
    total = sum(ctx.o.token_steps)
    print(f"- minting {total:,} distinct tokens with auth's key ring ...", flush=True)
    started = time.monotonic()
    tokens = await asyncio.to_thread(mint_tokens, ctx.stack.process("auth-1").env, total,
                                     cores=frozenset(ctx.all_cores))
    mint_seconds = time.monotonic() - started
    print(f"  minted in {mint_seconds:.0f} s", flush=True)
    steps = await send_steps(ctx, tokens)
    bound = state_bound(dict(ctx.stack.process("gateway-mem").env), tokens)
    return {"steps": steps, "mint_seconds": mint_seconds, **bound}
