"""The gateway-wide WebSocket limits; a route's own message limit is its max_body_bytes."""

from __future__ import annotations

import dataclasses

from common.settings import Env, env_float, env_int


@dataclasses.dataclass(frozen=True, slots=True)
class WebSocketSettings:
    # A socket with no message either way for this long is closed (4002): a client that
    # vanished without a close frame must not hold a slot and an upstream socket for ever.
    idle_timeout_seconds: float = 300.0
    # Open sockets per gateway process, and per caller (token subject) on it: beyond
    # either the handshake is refused (503, 429) before any upstream socket is opened.
    max_connections: int = 1000
    max_per_caller: int = 20

    @classmethod
    def from_env(cls, env: Env) -> WebSocketSettings:
        return cls(
            idle_timeout_seconds=env_float(
                env, "PASSGATE_WEBSOCKET_IDLE_TIMEOUT", 300.0, minimum=1.0, maximum=86400.0
            ),
            max_connections=env_int(env, "PASSGATE_WEBSOCKET_MAX_CONNECTIONS", 1000, minimum=1),
            max_per_caller=env_int(env, "PASSGATE_WEBSOCKET_MAX_PER_CALLER", 20, minimum=1),
        )
