"""GET /orders/stream: the caller's order changes as they happen, over a WebSocket.

Only the caller's own orders: the owner is the identity the gateway asserted at the
handshake, as for every other handler. The first message is `{"type": "ready", "cursor":
...}` (changes from then on are sent); each change after it is `{"type": "order",
"order": {...}, "cursor": ...}`, the order as GET /orders/{id} answers it (status `placed`
or `cancelled`). A client that reconnects (its token expired, the socket was idle) passes
the last cursor it got as `?since=`, and gets the changes it would otherwise have missed
in between (some perhaps again: it keeps the last status it saw per order).

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
from common.timestamps import rfc3339
from common.validation import invalid_request
from services.orders.app_keys import REPOSITORY
from services.orders.handlers import owner_of
from services.orders.models import Order
from services.orders.repository import OrderRepository

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 1.0
OVERLAP_SECONDS = 5.0
MAX_RESUME_SECONDS = 300.0  # how far back a reconnecting client may ask to resume
MAX_CLIENT_MESSAGE = 1024  # the stream reads nothing from the client but its close


class OrderChanges:
    """The caller's changes not yet sent, after `since`."""

    def __init__(self, repository: OrderRepository, owner: str, since: dt.datetime) -> None:
        self._repository = repository
        self._owner = owner
        self._floor = self.cursor = since
        self._sent: dict[str, tuple[str, dt.datetime]] = {}  # order id -> (status, changed at)

    async def poll(self) -> list[Order]:
        now = self._repository.clock()
        since = max(self._floor, self.cursor - dt.timedelta(seconds=OVERLAP_SECONDS))
        found = await self._repository.changed_since(self._owner, since)
        self.cursor = now
        fresh = []
        for order in found:
            changed_at = order.cancelled_at or order.created_at
            if self._sent.get(order.id, (None,))[0] != order.status:
                self._sent[order.id] = (order.status, changed_at)
                fresh.append(order)
        # What is behind the look-back window cannot be read again: forget it.
        self._sent = {key: sent for key, sent in self._sent.items() if sent[1] > since}
        return fresh


def _resume_from(request: web.Request, now: dt.datetime) -> dt.datetime:
    """Where the stream starts: now, or for `?since=<a cursor this stream sent>` (a client
    reconnecting) that cursor, less the look-back (late commits; a client may see a change
    twice, never miss one), and never more than MAX_RESUME_SECONDS back."""
    values = request.query.getall("since", [])
    if not values:
        return now
    try:
        if len(values) > 1:
            raise ValueError("given more than once")
        since = dt.datetime.fromisoformat(values[0])
        if since.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        raise invalid_request(
            [{"pointer": "/since", "detail": "a cursor from this stream (an RFC 3339 time), once"}]
        ) from None
    earliest = now - dt.timedelta(seconds=MAX_RESUME_SECONDS)
    return min(now, max(earliest, since - dt.timedelta(seconds=OVERLAP_SECONDS)))


async def stream_orders(request: web.Request) -> web.StreamResponse:
    identity = require_identity(request, scope="orders:read")
    owner = owner_of(identity)
    repository = request.app[REPOSITORY]
    since = _resume_from(request, repository.clock())  # bad input is a 400, upgrade or not
    socket = web.WebSocketResponse(max_msg_size=MAX_CLIENT_MESSAGE)
    if not socket.can_prepare(request).ok:
        raise Problem(
            426, "GET /orders/stream is a WebSocket: open it with Upgrade: websocket",
            kind="websocket-required", headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    changes = OrderChanges(repository, owner, since)
    await socket.prepare(request)
    await socket.send_json({"type": "ready", "cursor": rfc3339(changes.cursor)})
    closed = asyncio.create_task(_until_closed(socket))
    try:
        while not closed.done():
            for order in await changes.poll():
                await socket.send_json(
                    {"type": "order", "order": order.to_json(), "cursor": rfc3339(changes.cursor)}
                )
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
