"""GET /orders/stream: the caller's order changes as they happen, over a WebSocket.

Only the caller's own orders: the owner is the identity the gateway asserted at the
handshake, as for every other handler. The first message is `{"type": "ready"}` (changes
from then on are sent); each change after it is `{"type": "order", "order": {...}}`, the
order as GET /orders/{id} answers it (status `placed` or `cancelled`).

How a change made through another replica reaches this socket: each open stream asks the
database for the caller's orders changed since its cursor, every POLL_SECONDS. The
orders service stays stateless and needs nothing between its replicas: every change is
in the one database whichever replica made it, on SQLite (`make run`) and PostgreSQL
alike. The price is one indexed query (orders by user) per open stream per second.
Redis pub/sub would replace those queries with a message per change, but the orders
service has no Redis today and `make run` runs without one; PostgreSQL's LISTEN/NOTIFY
would not serve SQLite.

A change is stamped by the replica that made it when it ran, and commits a moment later,
so a poll could miss a change committed after a newer one was read. Each poll therefore
looks back OVERLAP_SECONDS behind its cursor and skips what it has already sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from aiohttp import ClientConnectionResetError, WSMsgType, web
from sqlalchemy import exc

from common.db import DRIVER_UNAVAILABLE_ERRORS
from common.errors import Problem
from common.identity import require_identity
from services.orders.app_keys import REPOSITORY
from services.orders.handlers import owner_of
from services.orders.models import Order
from services.orders.repository import OrderRepository

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 1.0
OVERLAP_SECONDS = 5.0
MAX_CLIENT_MESSAGE = 1024  # the stream reads nothing from the client but its close


class OrderChanges:
    """The caller's changes not yet sent, since the stream began."""

    def __init__(self, repository: OrderRepository, owner: str) -> None:
        self._repository = repository
        self._owner = owner
        self._started = self._cursor = repository.clock()
        self._sent: dict[str, tuple[str, dt.datetime]] = {}  # order id -> (status, changed at)

    async def poll(self) -> list[Order]:
        now = self._repository.clock()
        since = max(self._started, self._cursor - dt.timedelta(seconds=OVERLAP_SECONDS))
        found = await self._repository.changed_since(self._owner, since)
        self._cursor = now
        fresh = []
        for order in found:
            changed_at = order.cancelled_at or order.created_at
            if self._sent.get(order.id, (None,))[0] != order.status:
                self._sent[order.id] = (order.status, changed_at)
                fresh.append(order)
        # What is behind the look-back window cannot be read again: forget it.
        self._sent = {key: sent for key, sent in self._sent.items() if sent[1] > since}
        return fresh


async def stream_orders(request: web.Request) -> web.StreamResponse:
    identity = require_identity(request, scope="orders:read")
    owner = owner_of(identity)
    socket = web.WebSocketResponse(max_msg_size=MAX_CLIENT_MESSAGE)
    if not socket.can_prepare(request).ok:
        raise Problem(
            426, "GET /orders/stream is a WebSocket: open it with Upgrade: websocket",
            kind="websocket-required", headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    changes = OrderChanges(request.app[REPOSITORY], owner)
    await socket.prepare(request)
    await socket.send_json({"type": "ready"})
    closed = asyncio.create_task(_until_closed(socket))
    try:
        while not closed.done():
            for order in await changes.poll():
                await socket.send_json({"type": "order", "order": order.to_json()})
            await asyncio.wait({closed}, timeout=POLL_SECONDS)
    except ClientConnectionResetError:
        pass  # the client went while a change was being sent
    except (exc.DBAPIError, exc.TimeoutError, *DRIVER_UNAVAILABLE_ERRORS) as error:
        # The database went away (common.db answers HTTP requests 503 then): end the
        # stream with 1011; the client reconnects and lists what it missed.
        _LOGGER.warning("order stream stopped: database unavailable: %s", type(error).__name__)
        await socket.close(code=1011, message=b"orders unavailable")
    finally:
        closed.cancel()
    return socket


async def _until_closed(socket: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends until it closes, answering its pings."""
    async for message in socket:
        if message.type is WSMsgType.ERROR:
            return
