"""The WebSocket side of the recording backend: what a relayed socket meets upstream.

Its first message reports the handshake it received (headers, raw path, subprotocol);
then it echoes every message, except a few text commands that make it misbehave:

  flood:N:SIZE   send N binary messages of SIZE bytes as fast as the socket takes them,
                 counting each one sent in the app's BACKEND_STATE["flood_sent"]
  big:SIZE       send one binary message of SIZE bytes
  close:CODE     close the socket with CODE
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSMsgType, web

# The echo takes messages far larger than any route allows: the gateway is what limits.
MAX_MESSAGE = 64 * 1024 * 1024


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def websocket_peer(request: web.Request, state: dict[str, Any]) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, compress=False)
    await socket.prepare(request)
    await socket.send_json(
        {
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "protocol": socket.ws_protocol,
        }
    )
    flood: asyncio.Task[None] | None = None
    async for message in socket:
        if message.type is WSMsgType.BINARY:
            await socket.send_bytes(message.data)
            continue
        if message.type is not WSMsgType.TEXT:
            break
        command, _, argument = message.data.partition(":")
        if command == "flood":
            count, _, size = argument.partition(":")
            flood = asyncio.create_task(_flood(socket, int(count), int(size), state))
        elif command == "big":
            await socket.send_bytes(b"b" * int(argument))
        elif command == "close":
            await socket.close(code=int(argument), message=b"backend says bye")
            break
        else:
            await socket.send_str(message.data)
    if flood is not None:
        flood.cancel()
    return socket


async def _flood(socket: web.WebSocketResponse, count: int, size: int, state: dict[str, Any]) -> None:
    payload = b"f" * size
    state["flood_sent"] = 0
    for _ in range(count):
        await socket.send_bytes(payload)
        state["flood_sent"] += 1
