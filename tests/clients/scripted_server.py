"""A scripted WebSocket server in the test process, for the client's own logic.

Each accepted connection runs the next script: an async function given the
server connection and a `Peer` for sending protocol frames. Every frame the
client sends is kept (per connection), so tests can assert on exactly what
went over the wire. No Django, no database: the protocol's behaviour that the
client depends on is what the scripts play.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import websockets
from websockets.asyncio.server import ServerConnection

HELLO = {
    "type": "hello",
    "protocol": 1,
    "user": {"id": 1, "username": "alice"},
    "device": {"id": 7, "name": "phone"},
    "server_time": "2025-05-02T09:30:00Z",
    "heartbeat_interval": 25.0,
    "heartbeat_timeout": 60.0,
    "limits": {},
    "presence_timeout": 45.0,
    "typing_timeout": 6.0,
}


class Peer:
    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.received: list[dict] = []
        self._changed = asyncio.Condition()

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self) -> dict:
        frame = json.loads(await self.ws.recv())
        async with self._changed:
            self.received.append(frame)
            self._changed.notify_all()
        return frame

    async def until(self, condition, timeout: float = 5) -> None:
        """Until `condition(self.received)` holds."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: condition(self.received))

    async def expect(self, type_: str) -> dict:
        frame = await self.recv()
        assert frame["type"] == type_, frame
        return frame

    async def ok(self, request: dict, result: dict) -> None:
        await self.send({"type": "ok", "ref": request["ref"], "result": result})

    async def rate_limited(self, request: dict, retry_after: float) -> None:
        """Refuse `request` for the moment, with a retry hint."""
        await self.send(
            {
                "type": "error",
                "ref": request["ref"],
                "code": "rate_limited",
                "message": "",
                "details": {"retry_after": retry_after},
            }
        )

    async def handshake(self, sync_result: dict | None = None, before_ok: list[dict] = (), **hello) -> dict:
        """hello, then answer the client's sync (after the frames in `before_ok`)."""
        await self.send({**HELLO, **hello})
        sync = await self.expect("sync")
        for frame in before_ok:
            await self.send(frame)
        await self.ok(sync, sync_result or {"cursors": sync.get("cursors", {}), "reset": [], "gone": []})
        return sync

    async def serve_forever(self) -> None:
        """Answer every request as a server would when all goes well, until the client goes."""
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await self.answer(await self.recv())

    async def answer(self, frame: dict) -> None:
        if frame["type"] == "ping":
            await self.send({"type": "pong", "ref": frame["ref"], "server_time": HELLO["server_time"]})
        elif frame["type"] == "send":
            await self.ok(frame, sent(frame))
        elif frame["type"] == "typing":
            await self.ok(frame, {"conversation_id": frame["conversation_id"], "state": frame["state"]})
        else:
            await self.ok(frame, {})

    def of_type(self, type_: str) -> list[dict]:
        return [f for f in self.received if f["type"] == type_]


def sent(frame: dict, *, duplicate: bool = False) -> dict:
    """The `ok` result of a `send` frame."""
    return {
        "conversation_id": frame["conversation_id"],
        "message_id": 100,
        "seq": 2,
        "client_msg_id": frame["client_msg_id"],
        "duplicate": duplicate,
    }


Script = Callable[[Peer], Awaitable[None]]


class ScriptedServer:
    def __init__(self, *scripts: Script):
        self.scripts = list(scripts)
        self.peers: list[Peer] = []
        self.connected = asyncio.Condition()

    async def __aenter__(self) -> "ScriptedServer":
        self.server = await websockets.serve(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws/v1/"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        peer = Peer(ws)
        index = len(self.peers)
        self.peers.append(peer)
        async with self.connected:
            self.connected.notify_all()
        if index >= len(self.scripts):
            await ws.close(4401)  # a script too few: make the client stop rather than loop
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.scripts[index](peer)

    async def until_connections(self, count: int) -> None:
        async with self.connected:
            await self.connected.wait_for(lambda: len(self.peers) >= count)
