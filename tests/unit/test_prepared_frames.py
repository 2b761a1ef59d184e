"""Frames framed once per process and handed straight to Daphne's protocol."""

from gateway.transport import PreparedFrames, send_prepared


class FakeProtocol:
    STATE_OPEN, STATE_CLOSING = 3, 2

    def __init__(self, state=3, compress=None, queued=()):
        self.state = state
        self.sent = []
        self.written = []
        self._perMessageCompress = compress
        self.send_queue = list(queued)
        self.logOctets = False
        self.transport = self

    def write(self, data):
        self.written.append(data)

    def sendPreparedMessage(self, prepared):  # noqa: N802 (autobahn's name)
        self.sent.append(prepared)


def test_one_text_is_framed_once_for_every_connection():
    frames = PreparedFrames(size=2)
    text = '{"type":"event","seq":1}'
    first = frames.of(text)
    assert frames.of(text) is first
    assert first.payloadHybi.endswith(text.encode())  # an unmasked text frame around the text
    assert first.payloadHybi[0] == 0x81


def test_the_oldest_frames_are_forgotten_past_the_bound():
    frames = PreparedFrames(size=2)
    a = frames.of("a")
    frames.of("b")
    frames.of("c")
    assert frames.of("a") is not a


def test_only_an_open_protocol_is_sent_to_directly():
    open_protocol, closing = FakeProtocol(), FakeProtocol(state=FakeProtocol.STATE_CLOSING)
    assert send_prepared(open_protocol, "x") is True and open_protocol.written == [b"\x81\x01x"]
    assert send_prepared(closing, "x") is False and closing.sent == closing.written == []
    assert send_prepared(None, "x") is False


def test_compression_or_frames_queued_ahead_take_autobahns_own_path():
    compressed, busy = FakeProtocol(compress=object()), FakeProtocol(queued=[(b"earlier", False)])
    for protocol in (compressed, busy):
        assert send_prepared(protocol, "x") is True
        assert protocol.written == [] and len(protocol.sent) == 1
