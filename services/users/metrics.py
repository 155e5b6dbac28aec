"""Business metrics of the users service, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class UsersMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.profiles_created = Counter(
            "users_profiles_created",
            "Profiles created by provisioning (idempotent repeats are not counted).",
            registry=registry,
        )
        self.profiles_updated = Counter(
            "users_profiles_updated",
            "Profiles changed through PATCH /users/me.",
            registry=registry,
        )
