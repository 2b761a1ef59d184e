"""`Connection` against a scripted server: options passed on to
`websockets.connect`, a hello that never comes, handing the socket over."""

import asyncio
import json

import pytest
from realtime_sync_client import Connection, ConnectionClosed

from .scripted_server import HELLO, ScriptedServer

TIMEOUT = 5


async def test_connect_options_reach_websockets_connect():
    handshakes = []

    async def script(peer):
        handshakes.append(peer.ws.request.headers)
        await peer.send(HELLO)
        await peer.serve_forever()

    async with ScriptedServer(script, script) as server:
        plain = Connection(server.url, token="t")
        await plain.open()
        await plain.close()
        tuned = Connection(
            server.url,
            token="t",
            connect_options={"compression": None, "proxy": None, "user_agent_header": "probe/1", "max_queue": 4},
        )
        hello = await tuned.open()
        assert hello["type"] == "hello"
        assert tuned.ws.recv_messages.high == 4  # max_queue
        reply = await tuned.request("ping")
        assert reply["type"] == "pong"
        await tuned.close()
    default, options = handshakes
    assert "permessage-deflate" in default.get("Sec-WebSocket-Extensions", "")
    assert "Sec-WebSocket-Extensions" not in options  # compression=None
    assert options["User-Agent"] == "probe/1"
    assert options["Authorization"] == default["Authorization"] == "Bearer t"


async def test_a_hello_that_never_comes_is_a_close_caused_by_a_timeout():
    async def script(peer):
        await asyncio.wait_for(peer.ws.wait_closed(), TIMEOUT)  # no hello; the client gives up and aborts

    async with ScriptedServer(script) as server:
        connection = Connection(server.url, token="t", open_timeout=0.2)
        with pytest.raises(ConnectionClosed) as raised:
            await connection.open()
    assert raised.value.code is None
    assert isinstance(raised.value.__cause__, TimeoutError)


async def test_detach_returns_the_unread_frames_and_leaves_the_rest_to_the_caller():
    async def script(peer):
        await peer.send(HELLO)
        sync = await peer.expect("sync")
        await peer.send({"type": "event", "kind": "typing", "conversation_id": 3})  # before the ok
        await peer.ok(sync, {"cursors": {}, "reset": [], "gone": []})
        await peer.expect("ping")  # sent after detach
        await peer.send({"type": "event", "kind": "presence.updated"})
        await peer.ws.close(4000)

    async with ScriptedServer(script) as server:
        connection = Connection(server.url, token="t")
        await connection.open()
        reply = await connection.request("sync", cursors={})
        assert reply["type"] == "ok"
        await asyncio.sleep(0.1)  # the pushed frame has been read by then
        assert [f["kind"] for f in await connection.detach()] == ["typing"]
        assert not connection.closed
        with pytest.raises(RuntimeError):
            await connection.request("ping")
        await connection.send({"type": "ping"})
        text = await asyncio.wait_for(connection.ws.recv(), TIMEOUT)  # the caller reads the socket now
        assert json.loads(text)["kind"] == "presence.updated"
        assert await connection.wait_closed(TIMEOUT) == 4000
        assert connection.closed
        with pytest.raises(ConnectionClosed):
            await connection.recv(TIMEOUT)
