"""A lost database is a 503 problem and an unready service, and the service recovers alone."""

from __future__ import annotations

import asyncio
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from services.orders.app import create_app

ORDER = {"items": [{"sku": "BOOK-42", "quantity": 1, "unit_price_cents": 1250}]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def assert_unavailable(client, user_headers) -> None:
    response = await client.get("/orders", headers=user_headers)
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"]
    assert (await response.json(content_type=None))["type"].endswith("database-unavailable")
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json(content_type=None))["checks"]["database"] != "ok"
    assert (await client.get("/healthz")).status == 200


async def test_unreachable_database_is_503_and_unready(
    aiohttp_client, make_orders_settings, headers
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/passgate"
    client = await aiohttp_client(create_app(make_orders_settings(url, migrate_on_start=False)))
    me = headers.user(str(uuid.uuid4()))
    await assert_unavailable(client, me)
    placed = await client.post("/orders", json=ORDER, headers=me)
    assert placed.status == 503


class TcpProxy:
    """A loopback TCP relay that can be cut and restored, standing in for a database outage."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.transports: set[asyncio.BaseTransport] = set()
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one, as a crashed server would."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for transport in list(self.transports):
            transport.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            self.transports |= {writer.transport, up_writer.transport}
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.transports.discard(writer.transport)
            writer.transport.abort()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # needs a server to cut
async def test_recovers_when_the_database_returns(
    aiohttp_client, database_url, make_orders_settings, headers
) -> None:
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        proxied = database_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
        client = await aiohttp_client(create_app(make_orders_settings(proxied)))
        me = headers.user(str(uuid.uuid4()))
        order = await (await client.post("/orders", json=ORDER, headers=me)).json()

        await proxy.stop()
        await assert_unavailable(client, me)

        await proxy.start()  # the same port: the service's URL has not changed
        assert (await client.get("/readyz")).status == 200
        listing = await client.get("/orders", headers=me)
        assert listing.status == 200
        assert [o["id"] for o in (await listing.json())["items"]] == [order["id"]]
    finally:
        await proxy.stop()
