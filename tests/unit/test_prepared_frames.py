"""Frames framed once per process and handed straight to Daphne's protocol."""

import random
import string
import zlib

from gateway import compression, transport
from gateway.transport import Frame, Outbound, PreparedFrames

LONG = '{"type":"event","kind":"message.created","payload":{"body":"' + "lunch at noon? " * 10 + '"}}'


class FakeProtocol:
    STATE_OPEN, STATE_CLOSING = 3, 2

    def __init__(self, state=3, queued=()):
        self.state = state
        self.sent = []
        self.written = []
        self.send_queue = list(queued)
        self.logOctets = False
        self.transport = self

    def write(self, data):
        self.written.append(data)

    def sendData(self, data):  # noqa: N802 (autobahn's name)
        self.sent.append(data)


def deflated_outbound(protocol=None, *, window_bits=compression.WINDOW_BITS, context_allowed=True) -> Outbound:
    """An Outbound as `opened` leaves it after negotiating permessage-deflate."""
    outbound = Outbound(protocol or FakeProtocol())
    outbound.window_bits, outbound.context_allowed = window_bits, context_allowed
    return outbound


def inflate(frame: bytes, inflater=None) -> str:
    """The text of a compressed frame, as a client's inflater reads it."""
    assert frame[0] == 0xC1  # final text frame, RSV1 set
    payload = frame[2:] if frame[1] <= 125 else frame[4:] if frame[1] == 126 else frame[10:]
    inflater = inflater or zlib.decompressobj(-15)
    return inflater.decompress(payload + b"\x00\x00\xff\xff").decode()


def test_one_text_is_framed_once_for_every_connection():
    frames = PreparedFrames(size=2)
    text = '{"type":"event","seq":1}'
    first = frames.of(text)
    assert frames.of(text) is first
    assert first.plain == b"\x81" + bytes([len(text)]) + text.encode()  # an unmasked text frame around the text


def test_the_oldest_frames_are_forgotten_past_the_bound():
    frames = PreparedFrames(size=2)
    a = frames.of("a")
    frames.of("b")
    frames.of("c")
    assert frames.of("a") is not a


def test_only_an_open_protocol_is_sent_to_directly():
    open_protocol, closing = FakeProtocol(), FakeProtocol(state=FakeProtocol.STATE_CLOSING)
    assert Outbound(open_protocol).send("x") == 3 and open_protocol.written == [b"\x81\x01x"]
    assert Outbound(closing).send("x") == 0 and closing.sent == closing.written == []
    assert Outbound(None).send("x") == 0


def test_frames_queued_ahead_take_autobahns_send_path():
    busy = FakeProtocol(queued=[(b"earlier", False)])
    assert Outbound(busy).send("x") == 3
    assert busy.written == [] and busy.sent == [b"\x81\x01x"]


def test_a_frame_is_deflated_once_for_every_compressed_connection():
    frame = Frame(LONG)
    deflated = frame.deflated(12)
    assert frame.deflated(12) is deflated
    assert len(deflated) < len(frame.plain)
    assert inflate(deflated) == LONG


def test_short_or_incompressible_frames_go_as_they_are():
    short = Frame('{"type":"pong","ref":1}')
    assert short.deflated(12) is short.plain
    letters = random.Random(7).choices(string.ascii_letters + string.digits, k=110)
    noise = Frame('{"body":"' + "".join(letters) + '"}')
    assert noise.deflated(12) is noise.plain


def test_compressed_and_plain_connections_share_one_prepared_frame():
    plain_protocol, deflate_protocol = FakeProtocol(), FakeProtocol()
    plain, deflated = Outbound(plain_protocol), deflated_outbound(deflate_protocol)
    for outbound in (deflated, plain, deflated):
        assert outbound.send(LONG)
    assert plain_protocol.written == [Frame(LONG).plain]
    assert deflate_protocol.written[0] is deflate_protocol.written[1]  # the same bytes, deflated once
    assert inflate(deflate_protocol.written[0]) == LONG


def test_a_catch_up_is_compressed_as_one_stream_and_the_frames_after_it_on_their_own():
    protocol = FakeProtocol()
    outbound = deflated_outbound(protocol)
    texts = [LONG.replace("noon", f"noon {i}") for i in range(5)]
    with outbound.catching_up():
        for text in texts[:3]:
            outbound.send(text)
        outbound.send('{"type":"pong","ref":1}')  # short: plain, and not through the compressor
    for text in texts[3:]:
        outbound.send(text)
    written = protocol.written
    assert written[3] == b'\x81\x17{"type":"pong","ref":1}'
    # Each frame of the catch-up refers to the one before it: far smaller than on its own.
    assert len(written[1]) < len(Frame(texts[1]).deflated(12)) // 2
    # One inflater keeping its window reads every compressed frame in order, as a client does.
    inflater = zlib.decompressobj(-15)
    assert [inflate(f, inflater) for f in written[:3] + written[4:]] == texts
    assert written[4] == Frame(texts[3]).deflated(12)  # after the catch-up: on its own again


def test_no_catch_up_compressor_when_the_client_asked_for_no_context_takeover_or_without_deflate():
    for outbound in (deflated_outbound(context_allowed=False), Outbound(FakeProtocol())):
        with outbound.catching_up():
            outbound.send(LONG)
            outbound.send(LONG)
        assert outbound.protocol.written[0] == outbound.protocol.written[1]


def test_a_catch_ups_frames_are_not_kept_among_the_prepared_ones(monkeypatch):
    """They go through the connection's own compressor: no other connection can use them."""
    prepared = PreparedFrames()
    monkeypatch.setattr(transport, "prepared_frames", prepared)
    outbound = deflated_outbound()
    with outbound.catching_up():
        outbound.send(LONG)
        outbound.send('{"type":"pong","ref":1}')
    assert len(outbound.protocol.written) == 2 and prepared._frames == {}
    outbound.send(LONG)  # after the catch-up, shared again
    assert list(prepared._frames) == [LONG]


def test_frames_sent_while_corked_go_out_in_one_write_in_order():
    protocol = FakeProtocol()
    outbound = Outbound(protocol)
    with outbound.corked():
        assert outbound.send("a") == 3
        with outbound.corked():  # a cork inside: its frames wait for the outer one
            outbound.send("bb")
        assert protocol.written == []
        outbound.send("c")
    assert protocol.written == [b"\x81\x01a\x81\x02bb\x81\x01c"]
    outbound.send("d")  # after it: one write per frame again
    assert protocol.written[1:] == [b"\x81\x01d"]


def test_a_long_cork_is_written_every_max_corked_frames():
    protocol = FakeProtocol()
    outbound = Outbound(protocol)
    count = transport.MAX_CORKED_FRAMES + 3
    with outbound.corked():
        for _ in range(count):
            outbound.send("x")
        assert protocol.written == [b"\x81\x01x" * transport.MAX_CORKED_FRAMES]
    assert protocol.written[1:] == [b"\x81\x01x" * 3]


def test_corked_frames_of_a_connection_that_closed_meanwhile_are_not_written():
    protocol = FakeProtocol()
    outbound = Outbound(protocol)
    with outbound.corked():
        outbound.send("x")
        protocol.state = FakeProtocol.STATE_CLOSING
    assert protocol.written == [] and protocol.sent == []


def test_a_compressed_catch_up_can_be_corked():
    protocol = FakeProtocol()
    outbound = deflated_outbound(protocol)
    texts = [LONG.replace("noon", f"noon {i}") for i in range(3)]
    with outbound.catching_up(), outbound.corked():
        for text in texts:
            outbound.send(text)
    [data] = protocol.written
    inflater, frames = zlib.decompressobj(-15), []
    while data:  # split the write into its frames (each under 126 bytes here)
        size = 2 + data[1]
        frames.append(data[:size])
        data = data[size:]
    assert [inflate(f, inflater) for f in frames] == texts
