"""The WebSocket relay's series, on the gateway's registry; every label value is fixed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# Why a relayed socket ended (the label of gateway_websocket_closes_total).
CLOSE_REASONS = (
    "client_closed",
    "upstream_closed",
    "message_too_big",
    "token_expired",
    "idle",
    "upstream_failed",
    "shutdown",
    "error",
)
# Why a handshake was refused before any upgrade.
REFUSAL_REASONS = ("origin", "bad_handshake", "capacity", "caller_limit", "upstream")
DIRECTIONS = ("to_upstream", "to_client")


class WebSocketMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "gateway_websocket_connections",
            "WebSockets relayed right now.",
            registry=registry,
        )
        messages = Counter(
            "gateway_websocket_messages",
            "WebSocket messages relayed, by direction.",
            ["direction"],
            registry=registry,
        )
        relayed_bytes = Counter(
            "gateway_websocket_bytes",
            "WebSocket message payload bytes relayed, by direction.",
            ["direction"],
            registry=registry,
        )
        closes = Counter(
            "gateway_websocket_closes",
            "Relayed WebSockets ended, by reason.",
            ["reason"],
            registry=registry,
        )
        refused = Counter(
            "gateway_websocket_refused",
            "WebSocket handshakes refused before the upgrade, by reason.",
            ["reason"],
            registry=registry,
        )
        # Children bound once: the message counters are on the per-message path.
        self.messages = {d: messages.labels(d) for d in DIRECTIONS}
        self.bytes = {d: relayed_bytes.labels(d) for d in DIRECTIONS}
        self.closes = {r: closes.labels(r) for r in CLOSE_REASONS}
        self.refused = {r: refused.labels(r) for r in REFUSAL_REASONS}
