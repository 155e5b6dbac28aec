"""Tracing's cost on the gateway (issue 18): CPU per request with tracing off, on with every
request sampled, and on with 1 % sampled (parent-based trace-id ratio, the gateway being the
root), each gateway in front of the bare backend and exporting to an OTLP/HTTP sink
(bench.otlp_sink). Also how many spans reached the sink and how many were dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from bench.scenarios import Figures
from devstack.processes import free_port

if TYPE_CHECKING:
    from bench.run import Bench

RUNS = {
    "off": ("gateway → bare, tracing off", {}),
    "on_100": ("gateway → bare, tracing on, 100 % sampled", {}),
    "on_1": (
        "gateway → bare, tracing on, 1 % sampled",
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    ),
}


async def span_counts(ctx: Bench, name: str) -> dict[str, float]:
    """tracing_spans_* of one gateway, from its admin port's /metrics."""
    url = ctx.stack.process(name).env["PASSGATE_ADMIN_PORT"]
    async with ctx.session.get(f"http://127.0.0.1:{url}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("tracing_spans_") and sample.name.endswith("_total"):
                reason = sample.labels.get("reason")
                key = sample.name + (f"{{{reason}}}" if reason else "")
                counts[key] = sample.value
    return counts


async def run(ctx: Bench) -> Figures:
    port = free_port()
    ctx.start_python("otlp-sink", ["-m", "bench.otlp_sink", "--port", str(port)], {},
                     f"http://127.0.0.1:{port}/readyz")
    figures: dict[str, object] = {}
    for key, (title, extra) in RUNS.items():
        name = f"gateway-tracing-{key.replace('_', '-')}"
        env = ctx.bare_gateway_env(**extra)
        if key != "off":
            env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
        pid = ctx.spawn_gateway(name, env)
        try:
            measured = await ctx.measure(title, f"{ctx.stack.process_url(name)}/orders",
                                         processes={"gateway": [pid], "backend": [ctx.bare_pid]},
                                         headers=ctx.bearer(ctx.token))
            figures[f"gateway_cpu_us_{key}"] = round(measured.cpu_us_per_request["gateway"], 1)
            if key != "off":
                figures[f"spans_{key}"] = await span_counts(ctx, name)
        finally:
            ctx.stop_process(name)
    print("  tracing: gateway CPU per request "
          + ", ".join(f"{key} {figures[f'gateway_cpu_us_{key}']} µs" for key in RUNS), flush=True)
    return figures
