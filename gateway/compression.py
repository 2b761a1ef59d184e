"""permessage-deflate (RFC 7692) on the gateway's connections: what the server
accepts of a client's offer, and how it deflates frames.

Daphne builds its autobahn factory itself and accepts no compression; autobahn
reads `perMessageCompressionAccept` from each protocol when it answers the
handshake, which under Daphne is when the application accepts. So the gateway
sets it on the connection's own protocol just before accepting (transport.py).

What is accepted, and why (per-connection memory, the idle target is 40 KiB):

* Server to client, the server keeps no compressor between frames. A frame
  going to many devices is deflated once per process, on its own (no earlier
  frame referred to), and those bytes go to every connection that negotiated
  deflate, as plain frames go to the others. A self-contained message is
  valid whatever the client's window holds, so this needs no parameter.
  Only during a catch-up (`sync`) does a connection hold a compressor of its
  own, for as long as the catch-up lasts, so that each event can refer to the
  ones before it (3 times smaller); dropped at the end. A client that asks
  for `server_no_context_takeover` gets it, and no such compressor.
* Client to server, the response asks for `client_no_context_takeover`: the
  client compresses each frame on its own, and the server drops its
  decompressor after each frame instead of keeping a window per connection.
* Window: 2^WINDOW_BITS bytes (or what the client asked for with
  `server_max_window_bits`, if smaller); the client's window is left as
  offered.
* Frames under MIN_BYTES go uncompressed (deflate saves a few bytes at most
  there), and so does a frame that deflate would not make smaller.
"""

import struct
import zlib

from autobahn.websocket.compress_deflate import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)

# The server's LZ77 window: 4 KiB, about ten events back during a catch-up. With
# memLevel 4 (zlib's hash table and block buffer: 8 KiB, 128 KiB at its default
# of 8) a compressor takes 29 KiB; zlib's defaults (32 KiB window, memLevel 8)
# take 169 KiB for a catch-up 15 % smaller still (docs/performance.md).
WINDOW_BITS = 12
MEM_LEVEL = 4
LEVEL = zlib.Z_DEFAULT_COMPRESSION
# Shorter frames (pong, most `ok` replies) are sent as they are.
MIN_BYTES = 100
# What a sync flush ends with; RFC 7692 §7.2.1 removes it from each message.
_FLUSH_TAIL = b"\x00\x00\xff\xff"


class Negotiation:
    """One connection's answer to its client's permessage-deflate offers
    (autobahn calls `accept` while answering the handshake) and, afterwards,
    what was agreed."""

    __slots__ = ("accepted",)

    def __init__(self):
        self.accepted: PerMessageDeflateOfferAccept | None = None

    def accept(self, offers) -> PerMessageDeflateOfferAccept | None:
        """The first permessage-deflate offer, accepted; None (no compression)
        when there is none (a client may offer other extensions autobahn knows)."""
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                self.accepted = PerMessageDeflateOfferAccept(
                    offer,
                    request_no_context_takeover=True,
                    # autobahn's own compressor (Daphne's send path, which the
                    # gateway does not use) stays self-contained too.
                    no_context_takeover=True,
                    window_bits=window_bits_for(offer),
                    mem_level=MEM_LEVEL,
                )
                return self.accepted
        return None

    @property
    def window_bits(self) -> int:
        return self.accepted.window_bits if self.accepted else WINDOW_BITS

    @property
    def context_allowed(self) -> bool:
        """May a compressed frame refer to earlier ones (the client did not
        ask for server_no_context_takeover)?"""
        return self.accepted is not None and not self.accepted.offer.request_no_context_takeover


def decline(offers) -> None:
    """autobahn's default: accept no compression."""
    return None


def window_bits_for(offer: PerMessageDeflateOffer) -> int:
    requested = offer.request_max_window_bits  # 0: the client set no limit
    return min(WINDOW_BITS, requested) if requested else WINDOW_BITS


class ReleasingPerMessageDeflate(PerMessageDeflate):
    """autobahn's permessage-deflate, dropping its zlib objects at the end of
    each message when no context is taken over: otherwise every connection
    would keep an idle inflater (7 KiB plus its window) after its client's
    first frame."""

    def end_compress_message(self):
        data = super().end_compress_message()
        if self.server_no_context_takeover:
            self._compressor = None
        return data

    def end_decompress_message(self):
        super().end_decompress_message()
        if self.client_no_context_takeover:
            self._decompressor = None


def release_between_messages(protocol) -> bool:
    """Make the connection's negotiated permessage-deflate (if that is what it
    negotiated) drop its zlib objects between messages. True if it did."""
    extension = getattr(protocol, "_perMessageCompress", None)
    if type(extension) is PerMessageDeflate:
        extension.__class__ = ReleasingPerMessageDeflate
    return isinstance(extension, ReleasingPerMessageDeflate)


def compressor(window_bits: int):
    return zlib.compressobj(LEVEL, zlib.DEFLATED, -window_bits, MEM_LEVEL)


def deflate(payload: bytes, window_bits: int, context=None) -> bytes:
    """A message's compressed payload: on its own, or with `context` (a
    compressor of `compressor()` that every earlier compressed message of the
    connection went through)."""
    if context is None:
        context = compressor(window_bits)
    data = context.compress(payload) + context.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(_FLUSH_TAIL)
    return data[: -len(_FLUSH_TAIL)]


def text_frame(payload: bytes, *, compressed: bool = False) -> bytes:
    """A final, unmasked text frame (server to client) around `payload`;
    `compressed` sets RSV1, the mark of a permessage-deflate message."""
    first = 0xC1 if compressed else 0x81
    length = len(payload)
    if length <= 125:
        header = struct.pack("!BB", first, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload
