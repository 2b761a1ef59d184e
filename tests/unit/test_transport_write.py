"""gateway.transport.write: a frame goes straight into a plain TCP socket only
when nothing is queued ahead of it; the rest goes through Twisted's buffer, in
order. A real socket pair under a Twisted tcp.Server whose reactor is not run."""

import socket

import pytest
from twisted.internet import tcp

from gateway.transport import queued_bytes, write


@pytest.fixture
def transport():
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    server = tcp.Server.__new__(tcp.Server)
    server.socket = ours
    server.connected = 1
    server.disconnecting = False
    server.disconnected = False
    server.producer = None
    server.dataBuffer = b""
    server.offset = 0
    server._tempDataBuffer = []
    server._tempDataLen = 0
    server.registered_for_writing = 0
    server.startWriting = lambda: setattr(server, "registered_for_writing", server.registered_for_writing + 1)
    yield server, theirs
    ours.close()
    theirs.close()


def received(peer, size: int) -> bytes:
    peer.settimeout(2)
    data = b""
    while len(data) < size:
        data += peer.recv(size - len(data))
    return data


def test_a_frame_with_nothing_queued_goes_into_the_socket_without_the_reactor(transport):
    server, peer = transport
    write(server, b"frame one")
    assert server.registered_for_writing == 0
    assert queued_bytes(server) == 0
    assert received(peer, 9) == b"frame one"


def test_what_the_socket_does_not_take_is_buffered_and_later_frames_queue_behind_it(transport):
    server, peer = transport
    big = bytes(range(256)) * 4096  # 1 MiB: far more than the socket buffers hold
    write(server, big)
    left = queued_bytes(server)
    assert 0 < left < len(big)
    assert server.registered_for_writing == 1
    write(server, b"after")
    assert queued_bytes(server) == left + 5, "a later frame must not overtake the buffered rest"
    sent_directly = len(big) - left
    assert received(peer, sent_directly) == big[:sent_directly]


def test_a_closing_or_tls_connection_goes_through_twisted(transport):
    server, peer = transport
    handed_to_twisted = []
    server.write = handed_to_twisted.append
    server.disconnecting = True
    write(server, b"bye")
    server.disconnecting = False
    server.TLS = True  # only Twisted's write would encrypt it
    write(server, b"secret")
    assert handed_to_twisted == [b"bye", b"secret"]
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)
