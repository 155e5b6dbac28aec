"""Business metrics of the orders service, on the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class OrdersMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.placed = Counter(
            "orders_placed",
            "Orders created (an idempotent replay is not counted again).",
            registry=registry,
        )
        self.cancelled = Counter(
            "orders_cancelled",
            "Orders moved from placed to cancelled (repeated cancels are not counted).",
            registry=registry,
        )
