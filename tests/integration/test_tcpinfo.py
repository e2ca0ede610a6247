"""
Tests for L{streamd.listen.tcpinfo}: the bytes a TCP peer acknowledged, from the
kernel, on real loopback sockets.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from streamd.listen.tcpinfo import bytesAcked

WAIT_SECONDS = 5.0


class _SocketTransport:
    """
    The part of a Twisted TCP transport that L{bytesAcked} uses.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


def _queued(sock: socket.socket, request: int) -> int:
    count: int = struct.unpack("i", fcntl.ioctl(sock, request, b"\0" * 4))[0]
    return count


class BytesAckedTests(SynchronousTestCase):
    """
    L{bytesAcked} follows what the peer's kernel acknowledges, which is not
    what its application read, and says C{None} where the kernel cannot say.
    """

    if not sys.platform.startswith("linux"):
        skip = "TCP_INFO's tcpi_bytes_acked is Linux's"

    def connectedPair(self, receiveBuffer: int | None = None) -> tuple[socket.socket, socket.socket]:
        """
        A server-side socket and its client, on loopback, closed at cleanup.
        """
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        client = socket.socket()
        self.addCleanup(client.close)
        if receiveBuffer is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        self.addCleanup(server.close)
        server.setblocking(False)
        return server, client

    def waitFor(self, condition: Callable[[], bool]) -> None:
        """
        Return once C{condition()} holds; fail after L{WAIT_SECONDS}.

        Not L{tests.support.waitFor}: no reactor runs here, and the kernel
        tells nobody when its peer acknowledges bytes, so this asks it often.
        """
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"still not true after {WAIT_SECONDS:g} s")
            time.sleep(0.005)

    def test_countsWhatThePeerAcknowledged(self) -> None:
        """
        A new connection has acknowledged nothing; once bytes are sent, the
        peer's kernel acknowledges them though its application read none.
        """
        server, client = self.connectedPair()
        transport = _SocketTransport(server)
        self.assertEqual(bytesAcked(transport), 0)
        server.send(b"x" * 1000)
        self.waitFor(lambda: bytesAcked(transport) == 1000)
        self.assertEqual(_queued(client, termios.FIONREAD), 1000)

    def test_stopsWhileThePeerDoesNotRead(self) -> None:
        """
        Against a peer that does not read, the count stops at what its
        receive buffer holds, though much more is sent; once it reads, the
        count moves again, up to everything sent.
        """
        server, client = self.connectedPair(receiveBuffer=8192)
        transport = _SocketTransport(server)
        sent = 0
        try:
            while True:
                sent += server.send(b"y" * 65536)
        except BlockingIOError:
            pass
        self.waitFor(lambda: bytesAcked(transport) == _queued(client, termios.FIONREAD))
        stuck = bytesAcked(transport)
        assert stuck is not None
        self.assertLess(stuck, sent)
        self.assertEqual(_queued(server, termios.TIOCOUTQ), sent - stuck)
        client.setblocking(False)
        taken = 0
        while taken < sent:
            try:
                taken += len(client.recv(1 << 20))
            except BlockingIOError:
                self.waitFor(lambda: _queued(client, termios.FIONREAD) > 0)
        self.waitFor(lambda: bytesAcked(transport) == sent)

    def test_notTCP(self) -> None:
        """
        A UNIX socket, a test transport and a closed socket say nothing.
        """
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        self.assertIsNone(bytesAcked(_SocketTransport(left)))
        self.assertIsNone(bytesAcked(StringTransport()))
        server, _ = self.connectedPair()
        server.close()
        self.assertIsNone(bytesAcked(_SocketTransport(server)))

    def test_looksThroughTLS(self) -> None:
        """
        Over TLS, the count is that of the TCP connection under it (whose
        own handle is OpenSSL's connection, not a socket).
        """
        server, _ = self.connectedPair()
        server.send(b"z" * 10)
        tls = TLSMemoryBIOFactory(CertificateOptions(), True, Factory.forProtocol(Protocol)).buildProtocol(None)
        tls.transport = _SocketTransport(server)
        self.waitFor(lambda: bytesAcked(tls) == 10)
