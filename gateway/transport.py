"""Daphne's side of a connection: sending to it directly (deflated when the
client negotiated it), how much its client has not read yet, and dropping it.

Daphne hands each application `send = partial(server.handle_reply, protocol)`; the
protocol's Twisted transport keeps in the server's memory whatever the socket
(and the kernel's buffer behind it) has not accepted. A client that stops
reading makes that grow without bound, so the gateway looks at it before each
frame (see DeviceConnection.send_text). Under anything but Daphne there is no
transport to see: it reads 0 and nothing is dropped.
"""

import contextlib
import functools
from collections import OrderedDict

from twisted.internet import tcp

from . import compression

# Middleware may wrap `send` (Channels' SessionMiddleware keeps Daphne's as
# `real_send` on its wrapper); a few levels are looked through.
MAX_WRAPPERS = 4
# Frames kept framed: the latest events, each going to many connections.
MAX_PREPARED_FRAMES = 512
# Frames held by `Outbound.corked` before they are written anyway: what
# send_text's check of a client's unread bytes does not see yet stays small.
MAX_CORKED_FRAMES = 64


def protocol_of(consumer):
    """Daphne's WebSocket protocol under a consumer, or None. Found once per
    connection: it does not change while the connection lasts."""
    send = getattr(consumer, "base_send", None)
    for _ in range(MAX_WRAPPERS):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
    return None


def transport_of(consumer):
    """The Twisted transport under a consumer, or None."""
    return getattr(protocol_of(consumer), "transport", None)


class Frame:
    """One text frame, framed once per process for the many connections it goes
    to: as it is, and deflated on its own (compression.py) for those that
    negotiated permessage-deflate, once the first of them needs it."""

    __slots__ = ("payload", "plain", "_deflated")

    def __init__(self, text: str):
        self.payload = text.encode()
        self.plain = compression.text_frame(self.payload)
        self._deflated: dict[int, bytes] | None = None  # window bits -> frame

    def deflated(self, window_bits: int) -> bytes:
        """The frame deflated with this window, or the plain frame when it is
        short or deflate would not make it smaller."""
        if self._deflated is None:
            self._deflated = {}
        frame = self._deflated.get(window_bits)
        if frame is None:
            frame = self._deflated[window_bits] = self._deflate(window_bits)
        return frame

    def _deflate(self, window_bits: int) -> bytes:
        if len(self.payload) < compression.MIN_BYTES:
            return self.plain
        data = compression.deflate(self.payload, window_bits)
        return compression.text_frame(data, compressed=True) if len(data) < len(self.payload) else self.plain


class PreparedFrames:
    """The latest frames (Frame), by text. An event's text is one string object
    shared by every stream that sends it, so the lookup hashes it once."""

    def __init__(self, size: int = MAX_PREPARED_FRAMES):
        self.size = size
        self._frames: OrderedDict[str, Frame] = OrderedDict()

    def of(self, text: str) -> Frame:
        frame = self._frames.get(text)
        if frame is None:
            frame = self._frames[text] = Frame(text)
            if len(self._frames) > self.size:
                self._frames.popitem(last=False)
        return frame


prepared_frames = PreparedFrames()


class Outbound:
    """How text frames reach one Daphne connection: handed straight to its
    transport, framed once per process. Channels' and Daphne's send path (an
    ASGI message, middleware, a dispatch on its type, encoding and framing per
    connection) was a tenth of a busy server's time.

    With `accept_deflate`, the client's permessage-deflate offer is accepted
    (compression.py); create it before accepting the WebSocket and call
    `opened` after. A connection that negotiated it gets each frame deflated
    on its own (shared with every other such connection), or, inside
    `catching_up`, through a compressor of its own."""

    __slots__ = ("protocol", "transport", "window_bits", "context_allowed", "_negotiation", "_context", "_corked")

    def __init__(self, protocol, *, accept_deflate: bool = False):
        self.protocol = protocol
        self.transport = getattr(protocol, "transport", None)
        self.window_bits: int | None = None  # set when deflate was negotiated
        self.context_allowed = False
        self._negotiation = None
        self._context = None
        self._corked: list[bytes] | None = None  # frames held for one write (`corked`)
        if accept_deflate and protocol is not None:
            self._negotiation = compression.Negotiation()
            # Read by autobahn when it answers the handshake, i.e. when the
            # application accepts (the factory's value was copied at connect).
            protocol.perMessageCompressionAccept = self._negotiation.accept

    def opened(self) -> None:
        """After the handshake: take what was negotiated."""
        negotiation, self._negotiation = self._negotiation, None
        if negotiation is None:
            return
        # The handshake is over: let the negotiation (and the offer) go.
        self.protocol.perMessageCompressionAccept = compression.decline
        if negotiation.accepted is None:
            return
        if compression.release_between_messages(self.protocol):
            self.window_bits = negotiation.window_bits
            self.context_allowed = negotiation.context_allowed

    @property
    def compressed(self) -> bool:
        return self.window_bits is not None

    def send(self, text: str, *, once: bool = False) -> int:
        """Send a text frame (`once`: a frame for this connection only, such as
        `hello`, not kept among the prepared ones); the bytes written. 0 when
        there is no open protocol to send on (another server, or the socket is
        closing): the caller uses the ASGI send."""
        if not _is_open(self.protocol):
            return 0
        window_bits = self.window_bits
        if self._context is not None:
            # A catch-up's frames go through this connection's own compressor:
            # nothing to share with other connections, so none is kept.
            payload = text.encode()
            if len(payload) < compression.MIN_BYTES:
                data = compression.text_frame(payload)
            else:
                data = compression.text_frame(compression.deflate(payload, window_bits, self._context), compressed=True)
        else:
            frame = Frame(text) if once else prepared_frames.of(text)
            data = frame.plain if window_bits is None else frame.deflated(window_bits)
        corked = self._corked
        if corked is None:
            self._write(data)
        else:
            corked.append(data)
            if len(corked) >= MAX_CORKED_FRAMES:
                self._uncork()
        return len(data)

    def _write(self, data: bytes) -> None:
        protocol = self.protocol
        if _direct(protocol):
            # What autobahn's sendData does with nothing queued before it, without
            # the debug line it formats on every call (its arguments are built
            # whatever the log level: 4 % of a busy server).
            write(protocol.transport, data)
        else:
            protocol.sendData(data)

    @contextlib.contextmanager
    def corked(self):
        """While this lasts, frames are held and go out together, in order, in
        one write at its end (or every MAX_CORKED_FRAMES): a catch-up's frames
        were a socket write each, 40,000 system calls in a 2,000-device storm.
        Whatever is sent meanwhile, from anywhere, joins them, so the order
        holds; frames of a cork opened inside this one go out with these."""
        if self._corked is not None:
            yield
            return
        self._corked = []
        try:
            yield
        finally:
            self._uncork()
            self._corked = None

    def _uncork(self) -> None:
        frames, self._corked = self._corked, []
        if frames and _is_open(self.protocol):
            self._write(b"".join(frames))

    @contextlib.contextmanager
    def catching_up(self):
        """While this lasts, the connection's compressed frames go through one
        compressor of its own, each referring to the ones before it: a catch-up
        is hundreds of similar events. Every compressed frame it sends meanwhile
        must (and does) go through it; the frames after it are on their own
        again. Nothing happens without deflate, or if the client asked for
        server_no_context_takeover."""
        if not self.context_allowed or self._context is not None:
            yield
            return
        self._context = compression.compressor(self.window_bits)
        try:
            yield
        finally:
            self._context = None


def _is_open(protocol) -> bool:
    """Daphne's protocol is there and its WebSocket open (not closing)."""
    return protocol is not None and getattr(protocol, "state", None) == getattr(protocol, "STATE_OPEN", object())


def _direct(protocol) -> bool:
    """No frames queued ahead, no octet logging: the frame can go to the
    transport as it is. Read defensively: any doubt takes autobahn's sendData."""
    return not getattr(protocol, "send_queue", True) and getattr(protocol, "logOctets", True) is False


def write(transport, data: bytes) -> None:
    """Write to the transport; to a plain TCP socket with nothing queued ahead,
    straight into the socket.

    Twisted's write only buffers and registers the socket for writing; the
    reactor's next turn sends and unregisters it: two epoll_ctl calls and a
    turn for every frame to every connection, 12 % of a server fanning out
    100 deliveries a message (py-spy, bench/run.py at 80 msgs/s). asyncio's
    own transports try the socket first, and so does this, only where that
    keeps the frames in order: nothing buffered before, the connection not
    closing, and no TLS layer (which only Twisted's write would encrypt).
    What the socket does not take, an error included, goes through Twisted's
    write, which buffers it and reports the error as it always does."""
    if type(transport) is tcp.Server and _open_for_writing(transport) and not queued_bytes(transport):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EAGAIN, or an error that Twisted's own send will meet again
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def _open_for_writing(transport) -> bool:
    return (
        transport.connected
        and not transport.disconnecting
        and not getattr(transport, "_writeDisconnected", True)
        and not getattr(transport, "TLS", True)
    )


def queued_bytes(transport) -> int:
    if transport is None:
        return 0
    buffered = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return buffered + getattr(transport, "_tempDataLen", 0)


def is_gone(transport) -> bool:
    """The client's socket is closed or closing (no transport: cannot tell, so no)."""
    return bool(getattr(transport, "disconnected", False) or getattr(transport, "disconnecting", False))


def abort(transport) -> None:
    """Drop the TCP connection now, without a close handshake the client would
    never read (its close frame would sit behind the unread backlog)."""
    if transport is not None and hasattr(transport, "abortConnection"):
        transport.abortConnection()
