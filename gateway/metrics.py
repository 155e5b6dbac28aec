"""The gateway's own metrics (names fixed by the system contract), on the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.metrics import RequestHistogram

AUTH_FAILURE_REASONS = (
    "missing_token",
    "malformed",
    "bad_algorithm",
    "bad_type",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "lifetime_exceeded",
    "bad_issuer",
    "bad_audience",
    "missing_claim",
    "insufficient_scope",
    "keys_unavailable",
)


class GatewayMetrics:
    """Every gateway_* series; labels are bounded (upstream and route names, fixed reasons)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # One flat declaration per metric: long, but each reads on its own.
        self.upstream_duration = RequestHistogram(
            registry,
            "gateway_upstream_request_duration_seconds",
            "Time to the upstream's response headers, by outcome (status class or error).",
            ["upstream", "outcome"],
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries",
            "Idempotent requests retried on another replica after a connect failure.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_ejections = Counter(
            "gateway_upstream_ejections",
            "Replicas taken out of rotation after consecutive connect failures.",
            ["upstream"],
            registry=registry,
        )
        self.upstream_healthy = Gauge(
            "gateway_upstream_healthy_replicas",
            "Replicas of each upstream currently in rotation.",
            ["upstream"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "gateway_auth_failures",
            "Requests refused by token checks, by reason.",
            ["reason"],
            registry=registry,
        )
        self.jwks_refreshes = Counter(
            "gateway_jwks_refreshes",
            "Key-set fetches from the issuer's JWKS endpoint, by result.",
            ["result"],
            registry=registry,
        )
        self.jwks_age = Gauge(
            "gateway_jwks_age_seconds",
            "Seconds since the key set was last fetched successfully.",
            registry=registry,
        )
        self.jwks_keys = Gauge(
            "gateway_jwks_keys", "Usable signing keys in the key set.", registry=registry
        )
        self.token_cache = Counter(
            "gateway_token_cache_lookups",
            "Verified-token cache lookups, by result.",
            ["result"],
            registry=registry,
        )
        self.cors_rejections = Counter(
            "gateway_cors_rejections",
            "Cross-origin requests refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited",
            "Requests answered 429, by route.",
            ["route"],
            registry=registry,
        )
        # Children bound once: a labels() lookup per request costs more than the increment.
        self.auth_failure = {r: self.auth_failures.labels(r) for r in AUTH_FAILURE_REASONS}
        self.cache_hit = self.token_cache.labels("hit")
        self.cache_miss = self.token_cache.labels("miss")
        self.jwks_success = self.jwks_refreshes.labels("success")
        self.jwks_error = self.jwks_refreshes.labels("error")
