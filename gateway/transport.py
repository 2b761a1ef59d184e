"""How much a connection's client has not read yet, and dropping it.

Daphne hands each application `send = partial(server.handle_reply, protocol)`; the
protocol's Twisted transport keeps in the server's memory whatever the socket
(and the kernel's buffer behind it) has not accepted. A client that stops
reading makes that grow without bound, so the gateway looks at it before each
frame (see DeviceConnection.send_text). Under anything but Daphne there is no
transport to see: it reads 0 and nothing is dropped.
"""

import functools

# Middleware may wrap `send` (Channels' SessionMiddleware keeps Daphne's as
# `real_send` on its wrapper); a few levels are looked through.
MAX_WRAPPERS = 4


def transport_of(consumer):
    """The Twisted transport under a consumer, or None. Found once per
    connection: it does not change while the connection lasts."""
    send = getattr(consumer, "base_send", None)
    for _ in range(MAX_WRAPPERS):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return getattr(protocol, "transport", None)
        send = getattr(getattr(send, "__self__", None), "real_send", None)
    return None


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
