"""WebSocket routes: the handshake checked and authorised once, then frames relayed both ways.

A route with `websocket: true` relays a GET carrying `Upgrade: websocket`; every other
request to it is proxied as HTTP, and routes without the key are untouched (their handler
is the plain pipeline, so the HTTP path pays nothing for this).

  handshake.py   what a handshake must be (RFC 6455 4.2.1), its Origin, and where its token
                 comes from: Authorization, or the subprotocol bearer a browser offers
  relay.py       the upstream leg on a replica of the route's pool, and the two pumps
                 between the sockets with their limits (size, idle, token lifetime, counts)
  metrics.py     open sockets, messages and bytes relayed, closes and refusals by reason
  settings.py    the gateway-wide limits: idle timeout, sockets per gateway and per caller
"""

from gateway.websocket.handshake import SUBPROTOCOL, WebSocketRoute
from gateway.websocket.metrics import WebSocketMetrics
from gateway.websocket.relay import Relay
from gateway.websocket.settings import WebSocketSettings

__all__ = ["SUBPROTOCOL", "Relay", "WebSocketMetrics", "WebSocketRoute", "WebSocketSettings"]
