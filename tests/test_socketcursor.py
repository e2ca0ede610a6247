"""
Tests for L{streamd.fanout.socketcursor}: the socket cursor never reorders, drops or
duplicates bytes, keeps no copy of what a client is behind by, and the
Twisted internals it borrows still mean what it assumes.

These use a real L{twisted.internet.tcp.Connection} over a UNIX socket pair
with small buffers, on a L{MemoryReactor}: the kernel takes what it takes,
and the test plays the reactor, calling C{doWrite} while the transport asks
to be told the socket is writable.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from streamd import _internals
from streamd.config import FlowControl, Shortcuts
from streamd.fanout.cursor import Cursor
from streamd.fanout.history import DATA
from streamd.fanout.hub import Hub
from streamd.fanout.socketcursor import SocketCursor, bigReadLimit, cursorFor, sendsToSocket
from streamd.framing import INT32
from streamd.protocol import FramedProtocol
from streamd.reads import READ_SIZE
from streamd.reasons import Reason
from streamd.server import StreamServerProtocol
from streamd.stats import Stats

from .support import InMemoryDaemon


class Owner:
    """
    A cursor owner that records the cuts the hub asks for.
    """

    def __init__(self) -> None:
        self.cuts: list[Reason] = []

    def slowConsumer(self, cursor: object, reason: Reason, behind: int) -> None:
        self.cuts.append(reason)

    def streamGap(self, cursor: object, first: int, last: int) -> None:
        pass

    def ownMessages(self, cursor: object, first: int, last: int) -> None:
        pass


def socketPair(case: SynchronousTestCase) -> tuple[Connection, socket.socket, MemoryReactor]:
    """
    A Twisted transport on one end of a UNIX socket pair with 4 KiB buffers,
    the other end (non-blocking), and the memory reactor it reports to.
    """
    near, far = socket.socketpair()
    near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    case.addCleanup(near.close)
    case.addCleanup(far.close)
    reactor = MemoryReactor()
    transport = Connection(near, Protocol(), reactor)
    transport.connected = True
    near.setblocking(False)
    far.setblocking(False)
    return transport, far, reactor


def readAll(far: socket.socket, transport: Connection, reactor: MemoryReactor, size: int = 1 << 16) -> bytes:
    """
    Let the far end read everything, calling the transport's C{doWrite}
    as the reactor would whenever it watches for writability (which is how
    a cursor or mux is asked for more), until nothing more comes.
    """
    received = b""
    for _ in range(100_000):
        try:
            chunk = far.recv(size)
        except BlockingIOError:
            chunk = b""
        received += chunk
        if transport in reactor.getWriters():
            transport.doWrite()
        elif not chunk:
            break
    return received


class SocketCursorTests(SynchronousTestCase):
    """
    L{SocketCursor} against a real socket.
    """

    def setUp(self) -> None:
        self.transport, self.far, self.reactor = socketPair(self)
        self.clock = Clock()
        self.hub = Hub(Stats(), self.clock, FlowControl(history=1 << 30))
        self.owner = Owner()
        self.cursor = cursorFor(self.transport, self.hub, INT32, self.owner)
        self.hub.subscribe(self.cursor)

    def drain(self) -> bytes:
        """
        Let the far end read everything (L{readAll}).
        """
        return readAll(self.far, self.transport, self.reactor)

    def assertNothingBuffered(self) -> None:
        """
        The transport's own buffer is empty: every byte went to the socket.
        """
        self.assertEqual((self.transport.dataBuffer, self.transport._tempDataLen), (b"", 0))

    def test_chosenForSockets(self) -> None:
        """
        TCP and UNIX connections get a L{SocketCursor}; other transports the
        plain L{Cursor}.
        """
        self.assertIsInstance(self.cursor, SocketCursor)
        other = cursorFor(StringTransport(), self.hub, INT32, self.owner)
        self.assertNotIsInstance(other, SocketCursor)
        self.assertIsInstance(other, Cursor)

    def test_sendsAtOnce(self) -> None:
        """
        A batch for a caught-up client goes straight to the socket.
        """
        self.hub.publish([b"hello"])
        self.assertEqual(self.far.recv(100), INT32.encode(b"hello"))
        self.assertNothingBuffered()
        self.assertTrue(self.cursor.live)

    def test_behindKeepsNoCopy(self) -> None:
        """
        When the socket is full, the cursor falls behind, keeps only a view
        of the shared entry it had begun, asks to be told when the socket is
        writable, and gives the transport nothing.
        """
        big = b"x" * 100_000
        self.hub.publish([big])
        self.assertFalse(self.cursor.live)
        rest = self.cursor._rest
        assert rest is not None
        self.assertIs(rest.obj, self.hub.history[0][DATA])
        self.assertIn(self.transport, self.reactor.getWriters())
        self.hub.publish([b"after"])
        self.assertNothingBuffered()
        self.assertEqual(self.cursor.index, 1)

    def test_catchesUpInOrder(self) -> None:
        """
        Batches of every size, published while the client is behind and
        while it is caught up, reach the far end whole and in order; the
        cursor ends live, nobody was cut, and the transport's buffer was
        never used.
        """
        payloads = [bytes([i % 256]) * (i * 997 % 50_000 + 1) for i in range(60)]
        received = b""
        for i, payload in enumerate(payloads):
            self.hub.publish([payload, b"small %d" % i])
            self.assertNothingBuffered()
            if i % 7 == 0:
                received += self.drain()
        received += self.drain()
        expected = [p for i, payload in enumerate(payloads) for p in (payload, b"small %d" % i)]
        self.assertEqual(INT32.decoder(1 << 20).feed(received)[0], expected)
        self.assertTrue(self.cursor.live)
        self.assertEqual(self.owner.cuts, [])
        self.assertEqual(self.cursor.messages, len(expected))
        self.assertEqual(self.cursor.written, len(received))

    def test_privateFramesInOrder(self) -> None:
        """
        A frame for this client alone, sent while it is behind, arrives
        after the stream published before it and before what follows.
        """
        self.hub.publish([b"x" * 100_000])
        self.cursor.sendPrivate(INT32.encode(b"private"))
        self.hub.publish([b"later"])
        messages = INT32.decoder(1 << 20).feed(self.drain())[0]
        self.assertEqual(messages, [b"x" * 100_000, b"private", b"later"])

    def test_ownMessagesSkipped(self) -> None:
        """
        A client that is behind does not get back the messages it published
        itself when it sends from the log.
        """
        self.hub.publish([b"x" * 100_000])
        self.hub.publish([b"mine"], sender=self.cursor)
        self.hub.publish([b"theirs"])
        messages = INT32.decoder(1 << 20).feed(self.drain())[0]
        self.assertEqual(messages, [b"x" * 100_000, b"theirs"])

    def test_waitsForTransport(self) -> None:
        """
        A cursor made after the protocol wrote to the transport itself (an
        HTTP answer, bigger than the socket takes at once) sends nothing
        before the transport has sent that, however much is published
        meanwhile, then everything in order, and goes live.
        """
        self.cursor.abandon()
        self.transport.unregisterProducer()
        answer = b"HTTP/1.1 101 Switching Protocols\r\n" + b"h" * 20_000 + b"\r\n\r\n"
        self.transport.write(answer)
        cursor = cursorFor(self.transport, self.hub, INT32, self.owner, afterTransport=True)
        self.hub.subscribe(cursor)
        cursor.sendPrivate(INT32.encode(b"greeting"))
        for i in range(20):
            self.hub.publish([b"m%d" % i + b"x" * 5000])
        self.assertRaises(BlockingIOError, self.far.recv, 10)
        received = self.drain()
        self.assertEqual(received[: len(answer)], answer)
        messages = INT32.decoder(1 << 20).feed(received[len(answer) :])[0]
        self.assertEqual(messages, [b"greeting"] + [b"m%d" % i + b"x" * 5000 for i in range(20)])
        self.assertTrue(cursor.live)
        self.hub.publish([b"live"])
        self.assertEqual(self.far.recv(100), INT32.encode(b"live"))

    def test_disconnectingSendsNothing(self) -> None:
        """
        A transport that is closing is given nothing more.
        """
        self.transport.disconnecting = True
        self.hub.publish([b"late"])
        self.assertNothingBuffered()
        self.far.setblocking(False)
        self.assertRaises(BlockingIOError, self.far.recv, 10)


@implementer(IPullProducer)
class PullRecorder:
    """
    A pull producer that counts the times it is asked for more.
    """

    def __init__(self) -> None:
        self.resumed = 0

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        pass


class SwitchTests(SynchronousTestCase):
    """
    The shortcuts' switches, as L{cursorFor} sees them.
    """

    def allow(self, **shortcuts: bool) -> None:
        self.patch(_internals, "_checked", True)
        self.patch(_internals, "_refusal", None)
        self.patch(_internals, "_inForce", Shortcuts(**shortcuts))

    def test_offMeansPlainCursor(self) -> None:
        """
        With the fast path off, a TCP or UNIX connection gets the plain
        L{Cursor}, which writes through the transport.
        """
        self.allow(fastWrite=False)
        transport, _, _ = socketPair(self)
        self.assertFalse(sendsToSocket(transport))
        hub = Hub(Stats(), Clock())
        cursor = cursorFor(transport, hub, INT32, Owner())
        self.assertNotIsInstance(cursor, SocketCursor)
        hub.subscribe(cursor)
        hub.publish([b"through Twisted"])
        self.assertEqual(transport._tempDataLen, len(INT32.encode(b"through Twisted")))

    def test_bigReadsApart(self) -> None:
        """
        The read size is a shortcut of its own: with C{fastWrite} off a
        connection may still read up to L{READ_SIZE} bytes at once, and with
        C{bigReads} off it reads Twisted's 64 KiB.  Either way its first
        read is Twisted's 64 KiB.
        """
        self.allow(fastWrite=False)
        transport, _, _ = socketPair(self)
        self.assertEqual(bigReadLimit(transport), READ_SIZE)
        self.assertEqual(transport.bufferSize, 65536)
        self.allow(bigReads=False)
        transport, _, _ = socketPair(self)
        self.assertIsNone(bigReadLimit(transport))
        cursor = cursorFor(transport, Hub(Stats(), Clock()), INT32, Owner())
        self.assertIsInstance(cursor, SocketCursor)
        self.assertEqual(transport.bufferSize, 65536)

    def publisherAfterPartialFrame(self) -> Connection:
        """
        A daemon's int32 connection on a socket pair, once it has read 1,000
        bytes of a 1,028-byte frame.
        """
        transport, far, _ = socketPair(self)
        peer = IPv4Address("TCP", "127.0.0.1", 40001)
        # A socket pair's Connection does not know its addresses.
        transport.getPeer = transport.getHost = lambda: peer  # type: ignore[method-assign]
        protocol = InMemoryDaemon().factory.buildProtocol(peer)
        assert protocol is not None
        transport.protocol = protocol
        protocol.makeConnection(transport)
        far.send(INT32.encode(b"x" * 1024)[:1000])
        transport.doRead()
        return transport

    def test_readsEndOnFrames(self) -> None:
        """
        With C{bigReads}, a connection's next read is sized to end where a
        frame would if the next frames are of the last one's size: after a
        small read, the 28 bytes left of it and the number of whole frames
        that comes nearest to Twisted's 64 KiB (64, 284 bytes over it).
        """
        self.allow()
        transport = self.publisherAfterPartialFrame()
        self.assertEqual(transport.bufferSize, 28 + 64 * 1028)

    def test_bigReadsWhileFull(self) -> None:
        """
        After a read of Twisted's 64 KiB or more a connection asks for
        about L{READ_SIZE}, after a smaller one for 64 KiB again, each read
        ending on a frame: a publisher sending faster than it is read is
        read in big reads, one sending a little at a time in small ones.
        """
        self.allow()
        transport = self.publisherAfterPartialFrame()
        frame = INT32.encode(b"x" * 1024)
        asked = []
        for read in (frame[1000:] + frame * 27, frame * 64, frame * 400, frame):
            transport.protocol.dataReceived(read)
            asked.append(transport.bufferSize)
        self.assertEqual(
            asked,
            [
                # The frame's last 28 bytes and 27 more, under 64 KiB: 64 KiB
                # (64 frames, 256 bytes over).
                64 * 1028,
                # 64 frames, over 64 KiB: READ_SIZE (510 frames, 8 under).
                READ_SIZE // 1028 * 1028,
                READ_SIZE // 1028 * 1028,
                # One frame: 64 KiB again.
                64 * 1028,
            ],
        )

    def test_readsSizedOnlyWithBigReads(self) -> None:
        """
        With C{bigReads} off, a connection reads Twisted's 64 KiB whatever
        its frames.
        """
        self.allow(bigReads=False)
        self.assertEqual(self.publisherAfterPartialFrame().bufferSize, 65536)


class OneWritePathTests(SynchronousTestCase):
    """
    Everything the daemon writes to a client goes through the client's
    cursor: the fast path trusts that nothing else writes to the socket.
    """

    def test_onlyCursorsWrite(self) -> None:
        """
        No module of the daemon but the cursors and the mux they share on a
        connection of several streams (and the protocol both ends
        share, whose C{sendString} the server's protocol overrides) writes to
        a transport or its socket, but for a connection refused before it
        has a cursor (a line that says so).
        """
        import streamd

        root = Path(streamd.__file__).parent
        allowed = {"cursor.py", "socketcursor.py", "mux.py", "protocol.py"}
        pattern = re.compile(r"transport\.(write|writeSequence|socket)\b|\.sendmsg\(|\.send\(")
        offenders = [
            f"{path.relative_to(root)}:{number}"
            for path in sorted(root.rglob("*.py"))
            if path.name not in allowed and path.parent.name != "client"
            for number, text in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(text) and "refused: no cursor" not in text
        ]
        self.assertEqual(offenders, [])

    def test_serverSendStringUsesCursor(self) -> None:
        """
        The server's protocol sends its own frames through its cursor, not
        the write that C{FramedProtocol} inherits.
        """
        self.assertIsNot(StreamServerProtocol.sendString, FramedProtocol.sendString)
