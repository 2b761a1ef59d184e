"""permessage-deflate against a real server, read by real clients (the
`websockets` library offers it by default; `compression=None` does not).

Every compressed frame is read by the client's own inflater, so a frame the
server deflated wrongly, or one referring to something the client's window
does not hold, fails the test with the client's error."""

import json
import time

import pytest
from channels.db import database_sync_to_async
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.frames import Opcode

from conversations.models import Conversation
from conversations.services import create_conversation, send_message

from .conftest import SHARED_SERVER_ENV
from .harness import Device, started_on_first_use

db = database_sync_to_async

BODY = "Running ten minutes late, start without me and I will catch up on the notes. "


class Recorded(Device):
    """A device that records each text frame its permessage-deflate extension
    reads, with whether it came compressed (RSV1)."""

    def __init__(self, *args, compression="deflate", **kwargs):
        super().__init__(*args, **kwargs)
        if compression != "deflate":
            self.connect_options["compression"] = None
        if isinstance(compression, ClientPerMessageDeflateFactory):
            self.connect_options["extensions"] = [compression]
        self.read: list[tuple[dict, bool]] = []

    async def connect(self, **kwargs) -> "Recorded":
        await super().connect(**kwargs)
        if self.deflate is not None:
            decode = self.deflate.decode

            def recording(frame, *, max_size=None):
                decoded = decode(frame, max_size=max_size)
                if frame.opcode is Opcode.TEXT:
                    self.read.append((json.loads(bytes(decoded.data)), frame.rsv1))
                return decoded

            self.deflate.decode = recording
        return self

    def came_compressed(self, frame: dict) -> bool:
        return next(compressed for read, compressed in self.read if read == frame)

    @property
    def extensions_header(self) -> str | None:
        return self.ws.response.headers.get("Sec-WebSocket-Extensions")

    @property
    def deflate(self) -> PerMessageDeflate | None:
        return next((e for e in self.ws.protocol.extensions if isinstance(e, PerMessageDeflate)), None)


def message_frame(conversation_id, seq):
    return lambda f: f["type"] == "event" and f.get("conversation_id") == conversation_id and f.get("seq") == seq


@pytest.fixture
def room(account):
    """`await room()` -> (conversation id, last seq, [token of each device]): two
    users, one with two devices, in one conversation."""

    async def make(history=0):
        alice, alice_tokens = await account(devices=2)
        bob, (bob_token,) = await account()

        @db
        def setup():
            conversation, _ = create_conversation(creator=alice, kind="group", title="deflate", member_ids=[bob.pk])
            for i in range(history):
                sender = (alice, bob)[i % 2]
                send_message(sender=sender, conversation_id=conversation.pk, client_msg_id=f"h{i}", body=f"{i}: {BODY}")
            return conversation.pk, Conversation.objects.get(pk=conversation.pk).last_seq

        conversation_id, last_seq = await setup()
        return conversation_id, last_seq, [*alice_tokens, bob_token]

    return make


async def test_an_offer_is_accepted_and_frames_come_compressed(server, room):
    conversation_id, last_seq, (token, *_) = await room()
    device = await Recorded(server.url, token, name="d").connect()
    try:
        assert device.extensions_header == "permessage-deflate; client_no_context_takeover"
        assert device.deflate.local_no_context_takeover  # the client compresses each frame on its own
        assert device.hello["type"] == "hello"
        assert (await device.request("sync", cursors={str(conversation_id): last_seq}))["type"] == "ok"
        # Its requests go compressed too, one after another (the server reads each on its own).
        for i in range(3):
            reply = await device.request(
                "send", conversation_id=conversation_id, client_msg_id=f"c{i}", body=f"{i} {BODY}"
            )
            assert reply["type"] == "ok", reply
            event = await device.received(message_frame(conversation_id, last_seq + 1 + i))
            assert event["payload"]["body"] == f"{i} {BODY}"
            assert device.came_compressed(event)
    finally:
        await device.close()


async def test_one_message_reaches_a_compressed_and_a_plain_device_at_once(server, room):
    conversation_id, last_seq, (alice_token, alice_laptop, bob_token) = await room()
    compressed = await Recorded(server.url, alice_token, name="z").connect()
    plain = await Recorded(server.url, bob_token, name="p", compression=None).connect()
    sender = await Recorded(server.url, alice_laptop, name="s", compression=None).connect()
    try:
        assert plain.extensions_header is None and plain.deflate is None
        for device in (compressed, plain, sender):
            assert (await device.request("sync", cursors={str(conversation_id): last_seq}))["type"] == "ok"
        reply = await sender.request("send", conversation_id=conversation_id, client_msg_id="fan", body=BODY * 3)
        assert reply["type"] == "ok", reply
        seq = reply["result"]["seq"]
        received = [await d.received(message_frame(conversation_id, seq)) for d in (compressed, plain, sender)]
        assert received[0] == received[1] == received[2]
        assert received[0]["payload"]["body"] == BODY * 3
        assert compressed.came_compressed(received[0])
    finally:
        for device in (compressed, plain, sender):
            await device.close()


@pytest.mark.parametrize(
    "compression",
    [
        pytest.param("deflate", id="default offer"),
        pytest.param(ClientPerMessageDeflateFactory(server_no_context_takeover=True), id="server_no_context_takeover"),
        pytest.param(
            ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=True), id="small window"
        ),
    ],
)
async def test_a_catch_up_then_live_events_read_in_order(server, room, compression):
    """The catch-up's frames may refer to each other; the live ones after it do
    not: the client's inflater reads both, in order."""
    conversation_id, last_seq, (token, sender_token, _) = await room(history=30)
    device = await Recorded(server.url, token, name="c", compression=compression).connect()
    sender = await Recorded(server.url, sender_token, name="s", compression=None).connect()
    try:
        assert device.deflate is not None
        reply = await device.request("sync", cursors={str(conversation_id): last_seq - 30})
        assert reply["type"] == "ok" and reply["result"]["cursors"] == {str(conversation_id): last_seq}
        catch_up = device.events(conversation_id)
        assert [f["payload"]["body"] for f in catch_up] == [f"{i}: {BODY}" for i in range(30)]
        assert all(device.came_compressed(f) for f in catch_up)
        assert (await sender.request("sync", cursors={str(conversation_id): last_seq}))["type"] == "ok"
        for i in range(3):
            reply = await sender.request("send", conversation_id=conversation_id, client_msg_id=f"l{i}", body=BODY)
            event = await device.received(message_frame(conversation_id, reply["result"]["seq"]))
            assert event["payload"]["body"] == BODY and device.came_compressed(event)
        assert device.seqs(conversation_id) == list(range(last_seq - 29, last_seq + 4))
    finally:
        await device.close()
        await sender.close()


@pytest.fixture(scope="module")
def _uncompressed_server(django_db_setup):
    with started_on_first_use(**SHARED_SERVER_ENV, WS_COMPRESSION="0") as uncompressed_server:
        yield uncompressed_server


@pytest.fixture
def uncompressed_server(_uncompressed_server, transactional_db):
    """A server with WS_COMPRESSION off; afterwards, as for the shared server, wait
    until it has finished with the test's connections."""
    yield _uncompressed_server()
    from presence.models import DevicePresence, Status

    deadline = time.monotonic() + 10
    while DevicePresence.objects.exclude(status=Status.OFFLINE).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


async def test_with_the_setting_off_nothing_is_negotiated_and_everything_works(uncompressed_server, room):
    conversation_id, last_seq, (token, _, bob_token) = await room(history=5)
    device = await Recorded(uncompressed_server.url, token, name="o").connect()
    other = await Recorded(uncompressed_server.url, bob_token, name="b").connect()
    try:
        assert device.extensions_header is None and device.deflate is None
        reply = await device.request("sync", cursors={str(conversation_id): last_seq - 5})
        assert reply["type"] == "ok"
        assert [f["payload"]["body"] for f in device.events(conversation_id)] == [f"{i}: {BODY}" for i in range(5)]
        assert (await other.request("sync", cursors={str(conversation_id): last_seq}))["type"] == "ok"
        reply = await other.request("send", conversation_id=conversation_id, client_msg_id="off", body=BODY * 2)
        event = await device.received(message_frame(conversation_id, reply["result"]["seq"]))
        assert event["payload"]["body"] == BODY * 2
    finally:
        await device.close()
        await other.close()
