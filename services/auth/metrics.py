"""The auth_* metrics of common.md, on the app's own registry; labels are bounded enums."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LOGIN_RESULTS = ("success", "invalid_credentials", "throttled")
GRANT_TYPES = ("password", "refresh_token", "client_credentials", "oidc")
# RFC 7009 revocations: a live family ended; nothing to end (unknown, spent, expired or
# already revoked: still 200); refused (an access token, another client's token).
REVOCATION_RESULTS = ("revoked", "nothing_to_revoke", "refused")
INTROSPECTION_RESULTS = ("active", "inactive")
REGISTRATION_RESULTS = ("success", "conflict", "invalid", "provisioning_failed")
# Sign-ins through an external OpenID Connect provider, by outcome.
EXTERNAL_LOGIN_RESULTS = (
    "success",
    "created",
    "linked",
    "linked_by_email",
    "invalid_state",
    "denied",
    "provider_unavailable",
    "provider_misconfigured",
    "provider_error",
    "token_exchange_failed",
    "id_token_invalid",
    "identity_conflict",
    "provisioning_failed",
)
# Argon2id at the default m=19 MiB, t=2 takes ~0.02 s of an idle core, several times that
# on a busy one; tests use far less.
HASH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class AuthMetrics:
    def __init__(self, registry: CollectorRegistry, providers: tuple[str, ...] = ()) -> None:
        self.logins = Counter(
            "auth_logins", "Password logins, by result.", ["result"], registry=registry
        )
        self.tokens_issued = Counter(
            "auth_tokens_issued",
            "Access tokens issued, by grant type.",
            ["grant_type"],
            registry=registry,
        )
        self.refresh_rotations = Counter(
            "auth_refresh_rotations", "Refresh tokens spent and replaced.", registry=registry
        )
        self.refresh_reuse = Counter(
            "auth_refresh_reuse_detected",
            "Spent refresh tokens presented again; each revoked its family.",
            registry=registry,
        )
        self.password_hash_duration = Histogram(
            "auth_password_hash_duration_seconds",
            "Time to hash or verify one password with Argon2id.",
            ["operation"],
            buckets=HASH_BUCKETS,
            registry=registry,
        )
        self.registrations = Counter(
            "auth_registrations", "Account registrations, by result.", ["result"], registry=registry
        )
        self.external_logins = Counter(
            "auth_external_logins",
            "Sign-ins through an external OpenID Connect provider (configured ids), by result.",
            ["provider", "result"],
            registry=registry,
        )
        self.revocations = Counter(
            "auth_token_revocations",
            "RFC 7009 revocation requests from authenticated clients, by result.",
            ["result"],
            registry=registry,
        )
        self.introspections = Counter(
            "auth_token_introspections",
            "RFC 7662 introspection answers to authorised clients, by result.",
            ["result"],
            registry=registry,
        )
        self._zeros(providers)

    def _zeros(self, providers: tuple[str, ...]) -> None:
        """Every label value exists from the start, so rates and alerts see zeros, not gaps."""
        for result in LOGIN_RESULTS:
            self.logins.labels(result)
        for grant in GRANT_TYPES:
            self.tokens_issued.labels(grant)
        for operation in ("hash", "verify"):
            self.password_hash_duration.labels(operation)
        for result in REVOCATION_RESULTS:
            self.revocations.labels(result)
        for result in INTROSPECTION_RESULTS:
            self.introspections.labels(result)
        for result in REGISTRATION_RESULTS:
            self.registrations.labels(result)
        for provider in providers:
            for result in EXTERNAL_LOGIN_RESULTS:
                self.external_logins.labels(provider, result)
