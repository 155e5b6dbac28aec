"""`make bench`: what the gateway costs per request, against direct, HAProxy, nginx,
bare-aiohttp and session-lookup baselines, judged against issue 14's targets. Each
scenario is a module of bench.scenarios. Bench-only code: nothing in the product imports it."""
