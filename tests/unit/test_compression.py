"""What the server accepts of a client's permessage-deflate offer (RFC 7692),
and what it then sends: checked against another implementation's reading of
the same handshake and frames (the `websockets` library's client side)."""

from types import SimpleNamespace

import pytest
from autobahn.websocket.compress import PerMessageBzip2Offer
from autobahn.websocket.compress_deflate import PerMessageDeflate, PerMessageDeflateOffer
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.extensions.permessage_deflate import PerMessageDeflate as Client
from websockets.frames import Frame, Opcode
from websockets.headers import parse_extension
from websockets.streams import StreamReader

from gateway import compression
from gateway.transport import Outbound

LONG = '{"type":"event","kind":"message.created","payload":{"body":"' + "see you at the station at nine " * 6 + '"}}'


def offer(header: str) -> PerMessageDeflateOffer:
    """A client's Sec-WebSocket-Extensions offer, parsed as autobahn does."""
    (name, params), *_ = parse_extension(header)
    assert name == "permessage-deflate"
    grouped = {}
    for key, value in params:
        grouped.setdefault(key, []).append(True if value is None else value)
    return PerMessageDeflateOffer.parse(grouped)


def client_side(response_header: str, factory: ClientPerMessageDeflateFactory) -> Client:
    """The client's extension after reading the server's response, or NegotiationError."""
    (_, params), *_ = parse_extension(response_header)
    return factory.process_response_params(params, [])


def test_a_browser_offer_is_accepted_asking_the_client_for_no_context_takeover():
    negotiation = compression.Negotiation()
    accepted = negotiation.accept([offer("permessage-deflate; client_max_window_bits")])
    assert accepted.get_extension_string() == "permessage-deflate; client_no_context_takeover"
    assert negotiation.window_bits == compression.WINDOW_BITS
    assert negotiation.context_allowed
    # autobahn's own compressor, should anything use it, keeps no context.
    assert accepted.no_context_takeover is True and accepted.mem_level == compression.MEM_LEVEL


def test_what_the_client_asks_of_the_server_is_granted():
    negotiation = compression.Negotiation()
    accepted = negotiation.accept(
        [offer("permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits")]
    )
    assert accepted.get_extension_string() == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover"
    )
    assert negotiation.window_bits == 10
    assert not negotiation.context_allowed
    # A larger window than ours is not taken up.
    wide = compression.Negotiation()
    wide.accept([offer("permessage-deflate; server_max_window_bits=15")])
    assert wide.window_bits == compression.WINDOW_BITS


def test_only_permessage_deflate_is_accepted():
    negotiation = compression.Negotiation()
    assert negotiation.accept([PerMessageBzip2Offer()]) is None
    assert negotiation.accepted is None and not negotiation.context_allowed
    deflate = offer("permessage-deflate")
    assert negotiation.accept([PerMessageBzip2Offer(), deflate]).offer is deflate


@pytest.mark.parametrize(
    "factory",
    [
        ClientPerMessageDeflateFactory(),  # what `websockets` offers by default, less the memLevel
        ClientPerMessageDeflateFactory(client_max_window_bits=True),
        ClientPerMessageDeflateFactory(server_no_context_takeover=True),
        ClientPerMessageDeflateFactory(server_max_window_bits=11, client_max_window_bits=True),
    ],
)
def test_another_implementation_accepts_the_response_and_reads_what_is_sent(factory):
    header = "permessage-deflate" + "".join(
        f"; {name}" + (f"={value}" if value is not None else "") for name, value in factory.get_request_params()
    )
    negotiation = compression.Negotiation()
    response = negotiation.accept([offer(header)]).get_extension_string()
    client = client_side(response, factory)
    assert client.remote_no_context_takeover or negotiation.context_allowed
    assert client.local_no_context_takeover  # the client compresses each frame on its own

    outbound = Outbound(FakeProtocol())
    outbound.window_bits, outbound.context_allowed = negotiation.window_bits, negotiation.context_allowed
    texts = [LONG.replace("nine", f"nine {i}") for i in range(6)]
    with outbound.catching_up():
        for text in texts[:3]:
            outbound.send(text)
    for text in texts[3:]:
        outbound.send(text)
    assert [read_frame(data, client).data.decode() for data in outbound.protocol.written] == texts


def test_the_decompressor_is_dropped_after_each_client_message():
    protocol = SimpleNamespace(
        _perMessageCompress=PerMessageDeflate(True, True, True, 12, 15, 4),  # as autobahn builds it
    )
    assert compression.release_between_messages(protocol)
    extension = protocol._perMessageCompress
    client = Client(False, True, 12, 15)  # server_no_context_takeover not asked; client_no_context_takeover granted
    for text in ("first message " * 20, "second message " * 20):
        data = client.encode(Frame(Opcode.TEXT, text.encode())).data
        extension.start_decompress_message()
        assert extension.decompress_message_data(data) == text.encode()
        extension.end_decompress_message()
        assert extension._decompressor is None
    assert not compression.release_between_messages(SimpleNamespace(_perMessageCompress=None))


class FakeProtocol:
    STATE_OPEN = 3
    state = 3
    send_queue = ()
    logOctets = False

    def __init__(self):
        self.written = []
        self.transport = self

    def write(self, data):
        self.written.append(data)


def read_frame(data: bytes, client: Client) -> Frame:
    """One whole frame as the client reads it (websockets' parser and its
    permessage-deflate, keeping its window from frame to frame)."""
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False, extensions=[client])
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert frame.fin and frame.opcode == Opcode.TEXT and not reader.buffer
    return frame


class FakeTcpTransport:
    def __init__(self):
        self.written = b""

    def write(self, data):
        self.written += data

    def getPeer(self):  # noqa: N802 (Twisted's name)
        return SimpleNamespace(host="127.0.0.1", port=40000)

    def getHost(self):  # noqa: N802
        return SimpleNamespace(host="127.0.0.1", port=8000)

    def setTcpNoDelay(self, enabled):  # noqa: N802
        pass


def autobahn_handshake(extensions: str | None, *, accept_deflate: bool):
    """An autobahn server protocol answering a handshake, with the gateway's
    Outbound set on it before the answer, as the consumer does under Daphne."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    protocol = WebSocketServerProtocol()
    protocol.factory = WebSocketServerFactory()  # accepts no compression, as Daphne's
    protocol.transport = FakeTcpTransport()
    protocol._connectionMade()
    outbound = Outbound(protocol, accept_deflate=accept_deflate)
    request = [
        "GET /ws/v1/ HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ] + ([f"Sec-WebSocket-Extensions: {extensions}"] if extensions else [])
    protocol.data = ("\r\n".join(request) + "\r\n\r\n").encode()
    protocol.processHandshake()
    outbound.opened()
    return protocol, outbound


def test_autobahn_takes_the_accept_set_on_the_protocol_before_it_answers():
    protocol, outbound = autobahn_handshake("permessage-deflate; client_max_window_bits", accept_deflate=True)
    answer = protocol.transport.written.decode()
    assert answer.startswith("HTTP/1.1 101")
    assert "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n" in answer
    assert outbound.compressed and outbound.window_bits == compression.WINDOW_BITS and outbound.context_allowed
    assert type(protocol._perMessageCompress) is compression.ReleasingPerMessageDeflate
    # The handshake is over: the negotiation is not kept with the connection.
    assert protocol.perMessageCompressionAccept is compression.decline


@pytest.mark.parametrize(
    "extensions, accept_deflate",
    [("permessage-deflate; client_max_window_bits", False), (None, True), ("permessage-bzip2", True)],
)
def test_nothing_is_compressed_when_the_setting_is_off_or_nothing_is_offered(extensions, accept_deflate):
    protocol, outbound = autobahn_handshake(extensions, accept_deflate=accept_deflate)
    answer = protocol.transport.written.decode()
    assert answer.startswith("HTTP/1.1 101") and "Sec-WebSocket-Extensions" not in answer
    assert not outbound.compressed and protocol._perMessageCompress is None
    protocol.transport.written = b""
    outbound.send(LONG)
    assert protocol.transport.written == b"\x81~" + len(LONG).to_bytes(2, "big") + LONG.encode()
