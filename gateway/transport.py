"""Daphne's side of a connection: sending to it directly, how much its client
has not read yet, and dropping it.

Daphne hands each application `send = partial(server.handle_reply, protocol)`; the
protocol's Twisted transport keeps in the server's memory whatever the socket
(and the kernel's buffer behind it) has not accepted. A client that stops
reading makes that grow without bound, so the gateway looks at it before each
frame (see DeviceConnection.send_text). Under anything but Daphne there is no
transport to see: it reads 0 and nothing is dropped.
"""

import functools
from collections import OrderedDict

from autobahn.websocket.protocol import PreparedMessage

# Middleware may wrap `send` (Channels' SessionMiddleware keeps Daphne's as
# `real_send` on its wrapper); a few levels are looked through.
MAX_WRAPPERS = 4
# Frames kept framed: the latest events, each going to many connections.
MAX_PREPARED_FRAMES = 512


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


class PreparedFrames:
    """Text frames framed once per process (autobahn's PreparedMessage) for the
    many connections an event goes to. An event's text is one string object
    shared by every stream that sends it, so the lookup hashes it once."""

    def __init__(self, size: int = MAX_PREPARED_FRAMES):
        self.size = size
        self._frames: OrderedDict[str, PreparedMessage] = OrderedDict()

    def of(self, text: str) -> PreparedMessage:
        prepared = self._frames.get(text)
        if prepared is None:
            prepared = self._frames[text] = PreparedMessage(text.encode(), False, False, False)
            if len(self._frames) > self.size:
                self._frames.popitem(last=False)
        return prepared


prepared_frames = PreparedFrames()


def send_prepared(protocol, text: str) -> bool:
    """Hand a text frame straight to an open Daphne connection, framed once
    for all: Channels' and Daphne's send path (an ASGI message, middleware,
    a dispatch on its type, encoding and framing per connection) was a tenth
    of a busy server's time. False when there is no open protocol to send on
    (another server, or the socket is closing): the caller uses the ASGI send."""
    if protocol is None or getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return False
    prepared = prepared_frames.of(text)
    if _plain(protocol):
        # What autobahn's sendData does for an uncompressed frame with nothing
        # queued before it, without the debug line it formats on every call
        # (its arguments are built whatever the log level: 4 % of a busy server).
        protocol.transport.write(prepared.payloadHybi)
    else:
        protocol.sendPreparedMessage(prepared)
    return True


def _plain(protocol) -> bool:
    """No compression, no frames queued ahead, no octet logging: the frame can
    go to the transport as it is. Read defensively: any doubt takes autobahn's
    own path."""
    return (
        getattr(protocol, "_perMessageCompress", True) is None
        and not getattr(protocol, "send_queue", True)
        and getattr(protocol, "logOctets", True) is False
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
