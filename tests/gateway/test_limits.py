"""Limits on one connection and one user, against a real server: a client that
stops reading is cut off, one that floods is slowed then closed, and a user
cannot open connections without end. The others keep being served."""

import asyncio
import base64
import json
import os
import socket
import struct

import pytest
from channels.db import database_sync_to_async

from conversations.services import create_conversation
from gateway import close_codes

from .conftest import SHARED_SERVER_ENV
from .harness import Closed, Device, ServerProcess

db = database_sync_to_async

LIMITS = {
    "WS_RATE_PER_CONNECTION": "5",
    "WS_RATE_BURST_PER_CONNECTION": "5",
    "WS_RATE_STRIKES": "10",
    "WS_MAX_OUTBOUND_BYTES": "65536",
    "WS_MAX_CONNECTIONS_PER_USER": "2",
}


@pytest.fixture
def limited_server(transactional_db):
    server = ServerProcess(**SHARED_SERVER_ENV, **LIMITS).start()
    yield server
    server.stop()


@pytest.fixture
def fast_server(transactional_db):
    """Small output bound, but requests as fast as the test can send them."""
    env = {"WS_MAX_OUTBOUND_BYTES": "65536", "WS_RATE_PER_CONNECTION": "10000", "WS_RATE_BURST_PER_CONNECTION": "10000"}
    server = ServerProcess(**SHARED_SERVER_ENV, **env, WS_RATE_PER_USER="10000", WS_RATE_BURST_PER_USER="10000").start()
    yield server
    server.stop()


class NonReadingClient:
    """A WebSocket client on a raw socket with a tiny receive buffer that sends
    but never reads: the server's output to it can only pile up."""

    def __init__(self, port: int, token: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/v1/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101"), response

    def send(self, frame: dict) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        header = bytes([0x81]) + (
            bytes([0x80 | len(payload)])
            if len(payload) < 126
            else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        )
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def drained_until_closed(self, timeout: float = 20) -> bool:
        """Read everything now: True if the server dropped the connection."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True


async def test_a_client_that_stops_reading_is_cut_off_and_the_others_are_served(fast_server, account):
    (alice, (alice_token,)), (bob, (bob_token,)) = await account(), await account()
    conversation, _ = await db(create_conversation)(creator=alice, kind="group", member_ids=[bob.pk])
    deaf = NonReadingClient(fast_server.port, bob_token)
    deaf.send({"type": "sync", "ref": "s", "cursors": {}})
    sender = await Device(fast_server.url, alice_token).connect()
    await sender.request("sync", cursors={})
    body = "x" * 3900
    # Up to ~8 MB for bob: more than the kernel's socket buffers (up to 4 MB)
    # and the 64 KB bound together; the server gives up on him well before.
    for n in range(2000):
        reply = await sender.request("send", conversation_id=conversation.pk, client_msg_id=f"m{n}", body=body)
        assert reply["type"] == "ok", reply
        if n % 50 == 0:
            try:
                deaf.send({"type": "ping", "ref": n})  # still "alive": pings keep coming
            except (ConnectionResetError, BrokenPipeError):
                break  # the server has dropped it
            if "is not reading" in fast_server.output():
                break
    assert "is not reading" in fast_server.output()
    assert await asyncio.to_thread(deaf.drained_until_closed)
    assert (await sender.request("ping"))["type"] == "pong"
    await sender.close()


async def test_a_flooding_connection_is_refused_then_closed(limited_server, account):
    _, (token,) = await account()
    device = await Device(limited_server.url, token).connect()
    for n in range(40):
        await device.send_raw(json.dumps({"type": "ping", "ref": n}))
    with pytest.raises(Closed):
        while True:
            await device.next_frame()
    replies = [f for f in device.frames if f["type"] in ("pong", "error")]
    assert [f["type"] for f in replies[:5]] == ["pong"] * 5
    refused = [f for f in replies if f["type"] == "error"]
    assert refused and all(f["code"] == "rate_limited" and f["details"]["retry_after"] > 0 for f in refused)
    assert device.close_code == close_codes.RATE_LIMITED
    # A new connection of the same device starts with a full bucket.
    again = await Device(limited_server.url, token).connect()
    assert (await again.request("ping"))["type"] == "pong"
    await again.close()


async def test_a_user_has_a_bounded_number_of_connections(limited_server, account):
    _, tokens = await account(devices=3)
    first, second = [await Device(limited_server.url, t).connect() for t in tokens[:2]]
    third = Device(limited_server.url, tokens[2])
    await third.connect(expect_hello=False)
    refusal = await third.next_frame()
    assert (refusal["type"], refusal["code"]) == ("error", "too_many_connections")
    with pytest.raises(Closed):
        await third.next_frame()
    assert third.close_code == close_codes.TOO_MANY_CONNECTIONS
    await first.close()
    # Room again once the server has handled that close (a moment after the
    # client's close handshake): until then the refusal is still the answer.
    for _ in range(100):
        fourth = Device(limited_server.url, tokens[2])
        await fourth.connect(expect_hello=False)
        first_frame = await fourth.next_frame()
        if first_frame["type"] == "hello":
            break
        assert first_frame["code"] == "too_many_connections"
        await fourth.wait_closed()
        await asyncio.sleep(0.05)
    assert first_frame["type"] == "hello"
    for device in (second, fourth):
        await device.close()
