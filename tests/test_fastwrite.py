"""
Tests for L{streamd.fastwrite}: sending at once never reorders, drops or
duplicates bytes, and the outbox's flow control still holds.

These use a real L{twisted.internet.tcp.Connection} over a UNIX socket pair
with a small send buffer, on a L{MemoryReactor}: the kernel takes what it
takes, and the test drives the transport's C{doWrite} by hand.
"""

from __future__ import annotations

import socket

from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from streamd.fastwrite import ImmediateOutbox, canWriteNow, outboxFor
from streamd.outbox import Outbox, PendingLimits


class Owner:
    """
    An outbox owner that records what the outbox tells it.
    """

    def __init__(self) -> None:
        self.cuts: list[str] = []

    def slowConsumer(self, rule: str, pending: int) -> None:
        self.cuts.append(rule)

    def softLimitCrossed(self, above: bool) -> None:
        pass


class FastWriteTests(SynchronousTestCase):
    """
    L{ImmediateOutbox} against a real socket.
    """

    def setUp(self) -> None:
        self.near, self.far = socket.socketpair()
        self.near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.addCleanup(self.near.close)
        self.addCleanup(self.far.close)
        self.reactor = MemoryReactor()
        self.transport = Connection(self.near, Protocol(), self.reactor)
        self.transport.connected = True
        self.far.setblocking(False)
        self.owner = Owner()
        self.outbox = outboxFor(self.transport, self.owner, PendingLimits(hard=1 << 30, soft=1 << 29), Clock())

    def drain(self) -> bytes:
        """
        Let the far end read everything, letting the transport write its
        buffer as the reactor would whenever the socket is writable.
        """
        received = b""
        for _ in range(10_000):
            try:
                chunk = self.far.recv(1 << 16)
            except BlockingIOError:
                chunk = b""
            received += chunk
            buffered = self.transport._tempDataLen or len(self.transport.dataBuffer) > self.transport.offset
            if buffered:
                self.transport.doWrite()
            elif not chunk:
                break
        return received

    def test_usableOnTCP(self) -> None:
        """
        TCP and UNIX connections take the fast path; other transports do not.
        """
        self.assertTrue(canWriteNow(self.transport))
        self.assertFalse(canWriteNow(StringTransport()))
        self.assertIsInstance(self.outbox, ImmediateOutbox)
        other = outboxFor(StringTransport(), self.owner, PendingLimits(), Clock())
        self.assertNotIsInstance(other, ImmediateOutbox)
        self.assertIsInstance(other, Outbox)

    def test_smallWriteGoesAtOnce(self) -> None:
        """
        With nothing buffered, a small write reaches the socket at once and
        leaves nothing in Twisted's buffer (no reactor turn needed).
        """
        self.outbox.write(b"hello")
        self.assertEqual(self.transport._tempDataLen, 0)
        self.assertEqual(self.far.recv(100), b"hello")

    def test_partialSendKeepsRemainder(self) -> None:
        """
        When the kernel takes only part of a write, the rest is buffered by
        the transport and follows, byte for byte.
        """
        data = bytes(range(256)) * 1024
        self.outbox.write(data)
        self.assertGreater(self.transport._tempDataLen, 0)
        self.assertLess(self.transport._tempDataLen, len(data))
        self.assertEqual(self.drain(), data)

    def test_largeWriteGoesWhole(self) -> None:
        """
        A write larger than C{largeWrite} goes to the transport as it is
        (not sent in part and the rest copied), and writes after it wait
        behind it.
        """
        self.patch(ImmediateOutbox, "largeWrite", 1000)
        large = bytes(range(256)) * 8
        self.outbox.write(large)
        self.assertIs(self.transport._tempDataBuffer[0], large)
        self.outbox.write(b"behind")
        self.assertEqual(self.transport._tempDataLen, len(large) + len(b"behind"))
        self.assertEqual(self.drain(), large + b"behind")

    def test_atOnceAgainAfterDrain(self) -> None:
        """
        After a partial send, later writes wait behind the transport's buffer;
        once the transport has sent it, writes reach the socket at once again.
        """
        big = bytes(range(256)) * 80  # under the transport's pause threshold
        self.outbox.write(big)
        buffered = self.transport._tempDataLen
        self.assertGreater(buffered, 0)
        # The far end reads, so the socket has room, but the transport's
        # buffer still holds the rest of the first write.
        received = self.far.recv(1 << 16)
        self.outbox.write(b"behind")
        self.assertEqual(self.transport._tempDataLen, buffered + len(b"behind"))
        self.assertEqual(received + self.drain(), big + b"behind")
        self.outbox.write(b"now")
        self.assertEqual(self.transport._tempDataLen, 0)
        self.assertEqual(self.far.recv(100), b"now")

    def test_neverReordersWithBuffered(self) -> None:
        """
        Writes made while bytes are buffered go behind them (through the
        transport's buffer, or the outbox's queue while the transport has
        paused it); writes made after it drains go at once again; the far
        end sees every byte in write order, and nobody was cut.
        """
        chunks = [bytes([i % 256]) * (i * 997 % 50_000 + 1) for i in range(60)]
        expected = b""
        received = b""
        mostQueued = 0
        for i, chunk in enumerate(chunks):
            self.outbox.write(chunk)
            mostQueued = max(mostQueued, self.outbox.pending)
            expected += chunk
            if i % 7 == 0:
                received += self.drain()
        received += self.drain()
        self.assertEqual(received, expected)
        self.assertEqual(self.owner.cuts, [])
        self.assertEqual(self.outbox.pending, 0)
        self.assertGreater(mostQueued, 0, "the outbox's queue was never used")

    def test_disconnectingUsesBuffer(self) -> None:
        """
        A transport that is closing gets a plain write, so its own rules
        decide what happens to the bytes.
        """
        self.transport.disconnecting = True
        self.outbox.write(b"late")
        self.assertEqual(self.transport._tempDataLen, 4)
