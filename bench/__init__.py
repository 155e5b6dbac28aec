"""`make bench`: what the gateway costs and how it scales, against direct, nginx and
session-lookup baselines (issue 9). Bench-only code: nothing in the product imports it."""
