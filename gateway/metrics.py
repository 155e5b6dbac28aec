"""The gateway's own metrics (names fixed by the system contract), on the app's registry."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.metrics import LoopCounter, RequestHistogram

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
        # One flat declaration per metric, in three groups: each reads on its own.
        self._declare_upstreams(registry)
        self._declare_tokens(registry)
        self._declare_routes(registry)
        # Children bound once: a labels() lookup per request costs more than the increment.
        self.auth_failure = {r: self.auth_failures.labels(r) for r in AUTH_FAILURE_REASONS}
        self.cache_hit = self.token_cache.labels("hit")
        self.cache_miss = self.token_cache.labels("miss")
        self.jwks_success = self.jwks_refreshes.labels("success")
        self.jwks_error = self.jwks_refreshes.labels("error")

    def _declare_upstreams(self, registry: CollectorRegistry) -> None:
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

    def _declare_tokens(self, registry: CollectorRegistry) -> None:
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
        self.token_cache = LoopCounter(  # counted on every authenticated request
            registry,
            "gateway_token_cache_lookups",
            "Verified-token cache lookups, by result.",
            ["result"],
        )
        self.issuer_jwks_refreshes = Counter(
            "gateway_issuer_jwks_refreshes",
            "Key-set fetches of the issuers declared in the routes file, by issuer and result.",
            ["issuer", "result"],
            registry=registry,
        )
        self.issuer_jwks_age = Gauge(
            "gateway_issuer_jwks_age_seconds",
            "Seconds since each declared issuer's key set was last fetched successfully.",
            ["issuer"],
            registry=registry,
        )
        self.issuer_jwks_keys = Gauge(
            "gateway_issuer_jwks_keys",
            "Usable signing keys in each declared issuer's key set.",
            ["issuer"],
            registry=registry,
        )

    def _declare_routes(self, registry: CollectorRegistry) -> None:
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
        self.route_reloads = Counter(
            "gateway_route_reloads",
            "Routes-file reloads (SIGHUP or a changed file), by result: applied, unchanged, "
            "or refused (the file is invalid; the table in service stays).",
            ["result"],
            registry=registry,
        )
        self.route_table_loaded = Gauge(
            "gateway_route_table_loaded_timestamp_seconds",
            "When the route table in service was loaded.",
            registry=registry,
        )
        self.route_table_info = Gauge(
            "gateway_route_table_info",
            "1 for the route table in service, labelled with the SHA-256 of its file (12 hex digits).",
            ["sha256"],
            registry=registry,
        )

    def issuer_keys(self, issuer: str) -> IssuerKeyMetrics:
        """The key-set metrics of a declared issuer, shaped as the JWKS client uses them."""
        return IssuerKeyMetrics(
            jwks_success=self.issuer_jwks_refreshes.labels(issuer, "success"),
            jwks_error=self.issuer_jwks_refreshes.labels(issuer, "error"),
            jwks_age=self.issuer_jwks_age.labels(issuer),
            jwks_keys=self.issuer_jwks_keys.labels(issuer),
        )

    def forget_issuer(self, issuer: str) -> None:
        """An issuer left the routes file: its series go with it."""
        for result in ("success", "error"):
            _remove(self.issuer_jwks_refreshes, issuer, result)
        _remove(self.issuer_jwks_age, issuer)
        _remove(self.issuer_jwks_keys, issuer)


@dataclasses.dataclass(frozen=True, slots=True)
class IssuerKeyMetrics:
    """The four series a JwksClient reports, for one declared issuer."""

    jwks_success: Counter
    jwks_error: Counter
    jwks_age: Gauge
    jwks_keys: Gauge


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
