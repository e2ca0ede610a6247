"""
Tests for L{streamd.server}: relaying between clients, what is logged, and
what happens to a client that breaks the rules.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd import server
from streamd.config import ServerConfig
from streamd.fanout.cursor import Cursor
from streamd.framing import INT32
from streamd.reasons import Reason

from .support import InMemoryDaemon, frames


class _LoggingMixin:
    def observeLog(self) -> list[str]:
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self._logEvents = observer
        return observer  # type: ignore[return-value]

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self._logEvents]


class RelayTests(_LoggingMixin, SynchronousTestCase):
    """
    Messages from a client reach every other client, encoded once.
    """

    def setUp(self) -> None:
        self.observeLog()
        self.daemon = InMemoryDaemon()

    def test_relayToOthersNotSender(self) -> None:
        """
        A message a client sends reaches every other client and is not
        echoed back to the sender.
        """
        sender, senderTransport = self.daemon.connect()
        _, first = self.daemon.connect()
        _, second = self.daemon.connect()
        sender.dataReceived(INT32.encode(b"hello"))
        self.assertEqual(frames(first.value()), [b"hello"])
        self.assertEqual(frames(second.value()), [b"hello"])
        self.assertEqual(senderTransport.value(), b"")

    def test_joinAndLeaveBetweenMessages(self) -> None:
        """
        A client that connects between two messages gets only the second; a
        client that disconnects between them gets only the first.
        """
        sender, _ = self.daemon.connect()
        leaving, leavingTransport = self.daemon.connect()
        sender.dataReceived(INT32.encode(b"one"))
        _, joinedTransport = self.daemon.connect()
        leaving.connectionLost(Failure(ConnectionDone()))
        sender.dataReceived(INT32.encode(b"two"))
        self.assertEqual(frames(leavingTransport.value()), [b"one"])
        self.assertEqual(frames(joinedTransport.value()), [b"two"])

    def test_orderPreservedAcrossSplitReads(self) -> None:
        """
        Messages arriving split across reads in any way reach the others
        whole and in the order they were sent.
        """
        sender, _ = self.daemon.connect()
        _, receiver = self.daemon.connect()
        data = INT32.encodeMany([b"%d" % i for i in range(100)])
        for i in range(0, len(data), 7):
            sender.dataReceived(data[i : i + 7])
        self.assertEqual(frames(receiver.value()), [b"%d" % i for i in range(100)])

    def test_encodedOnceForAllRecipients(self) -> None:
        """
        Every recipient is handed the very same bytes object: the frames are
        not encoded again per client.
        """
        sender, _ = self.daemon.connect()
        for _ in range(3):
            self.daemon.connect()
        written: list[bytes] = []
        self.patch(Cursor, "deliver", lambda cursor, data, count: written.append(data))
        data = INT32.encodeMany([b"a", b"b"])
        sender.dataReceived(data)
        self.assertEqual(len(written), 3)
        self.assertTrue(all(w is written[0] for w in written))
        self.assertEqual(written[0], data)

    def test_publishFromSourceReachesEveryone(self) -> None:
        """
        A message published by the daemon itself (no sender) reaches every
        client.
        """
        transports = [self.daemon.connect()[1] for _ in range(3)]
        self.daemon.hub.publish([b"The time is 0.1"])
        for transport in transports:
            self.assertEqual(frames(transport.value()), [b"The time is 0.1"])

    def test_countersAndDisconnectLog(self) -> None:
        """
        The disconnect line gives the client's message counts in and out.
        """
        sender, _ = self.daemon.connect()
        other, _ = self.daemon.connect()
        sender.dataReceived(INT32.encodeMany([b"1", b"2"]))
        other.dataReceived(INT32.encode(b"3"))
        sender.connectionLost(Failure(ConnectionDone()))
        self.assertIn(
            "int32 client 127.0.0.1:40001 disconnected: 2 messages in, 1 out (Connection was closed cleanly.)",
            self.logLines(),
        )
        stats = self.daemon.stats
        self.assertEqual((stats.messagesIn, stats.messagesOut, stats.connections), (3, 3, 1))


class LoggingTests(_LoggingMixin, SynchronousTestCase):
    """
    Connections and messages are logged, and a flood is summarised.
    """

    def setUp(self) -> None:
        self.observeLog()
        self.daemon = InMemoryDaemon()

    def test_connectLogged(self) -> None:
        """
        A connection is logged with the peer address.
        """
        self.daemon.connect()
        self.assertIn("int32 client 127.0.0.1:40001 connected (1 connected)", self.logLines())

    def test_connectionStormSummed(self) -> None:
        """
        Past 20 connections (or disconnections) in a second, they are
        counted, not logged one by one, and one line a second sums them up:
        a storm of reconnections must not wait on the log.
        """
        clients = [self.daemon.connect()[0] for _ in range(25)]
        for client in clients:
            client.connectionLost(Failure(ConnectionDone()))
        lines = self.logLines()
        self.assertEqual(len([line for line in lines if line.startswith("int32 client ")]), 40)
        self.daemon.clock.advance(1)
        lines = self.logLines()
        self.assertIn("5 more clients connected in a second, not logged one by one (0 connected)", lines)
        self.assertIn("5 more clients disconnected in a second, not logged one by one (0 connected)", lines)

    def test_messageLoggedWithPreview(self) -> None:
        """
        A received message is logged with its peer, its size and at most 80
        characters of it, on one line.
        """
        sender, _ = self.daemon.connect()
        sender.dataReceived(INT32.encode(b"line one\nline two"))
        sender.dataReceived(INT32.encode(b"x" * 500))
        lines = self.logLines()
        self.assertIn("127.0.0.1:40001 sent 17 bytes: line one\\nline two", lines)
        long = [line for line in lines if "sent 500 bytes" in line][0]
        self.assertEqual(len(long.split(": ", 1)[1]), 80)

    def test_sentBeforeLogged(self) -> None:
        """
        A message is handed to its recipients before it is logged, so the log
        line never delays the stream.
        """
        sender, _ = self.daemon.connect()
        _, receiver = self.daemon.connect()
        seenWhenLogged = []
        globalLogPublisher.addObserver(observer := lambda event: seenWhenLogged.append(receiver.value()))
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        sender.dataReceived(INT32.encode(b"hello"))
        self.assertEqual([frames(seen) for seen in seenWhenLogged], [[b"hello"]])

    def test_floodIsSummarised(self) -> None:
        """
        Past 10 messages in a second, messages are not logged one by one; one
        summary line per second counts the rest.
        """
        sender, _ = self.daemon.connect()
        sender.dataReceived(INT32.encodeMany([b"m%d" % i for i in range(1000)]))
        sentLines = [line for line in self.logLines() if " sent " in line and "more" not in line]
        self.assertEqual(len(sentLines), 10)
        self.daemon.clock.advance(1.0)
        self.assertIn(
            "127.0.0.1:40001 sent 990 more messages (3870 bytes) not logged one by one",
            self.logLines(),
        )
        sender.dataReceived(INT32.encodeMany([b"n%d" % i for i in range(20)]))
        sentLines = [line for line in self.logLines() if " sent n" not in line and "bytes: n" in line]
        self.assertEqual(len(sentLines), 10)

    def test_heldCountReportedAtDisconnect(self) -> None:
        """
        Messages held back from the log are still reported when the client
        disconnects before the second is over.
        """
        sender, _ = self.daemon.connect()
        sender.dataReceived(INT32.encodeMany([b"m"] * 15))
        sender.connectionLost(Failure(ConnectionDone()))
        self.assertIn("127.0.0.1:40001 sent 5 more messages (5 bytes) not logged one by one", self.logLines())


class LimitTests(_LoggingMixin, SynchronousTestCase):
    """
    A client that sends too much or connects one too many is dropped, alone.
    """

    def setUp(self) -> None:
        self.observeLog()

    def test_oversizedFrame(self) -> None:
        """
        A client announcing a frame above --max-message-size is logged with
        its address, the announced size and the limit, and disconnected; the
        others still get the messages it sent before.
        """
        daemon = InMemoryDaemon(ServerConfig(maxMessageSize=100))
        sender, senderTransport = daemon.connect()
        _, receiver = daemon.connect()
        sender.dataReceived(INT32.encode(b"fine") + INT32.header(101) + b"x" * 10)
        self.assertEqual(frames(receiver.value()), [b"fine"])
        self.assertTrue(senderTransport.disconnecting)
        self.assertFalse(receiver.disconnecting)
        self.assertIn(
            "127.0.0.1:40001 announced a 101-byte frame, over the 100-byte limit; disconnecting",
            self.logLines(),
        )
        self.assertEqual(daemon.stats.disconnects[Reason.OVERSIZED_FRAME], 1)
        sender.dataReceived(INT32.encode(b"after"))
        self.assertEqual(frames(receiver.value()), [b"fine"])

    def test_maxPartialBytes(self) -> None:
        """
        The client whose unfinished frame would take all clients' unfinished
        frames over --max-partial-bytes is cut with one log line (its address,
        what it holds, the limit) and counted; the others keep theirs, finish
        them, and what they held is given back.
        """
        daemon = InMemoryDaemon(ServerConfig(maxMessageSize=10_000, maxPartialBytes=20_000))
        budget = daemon.factory.connections.partial
        first, firstTransport = daemon.connect()
        second, secondTransport = daemon.connect()
        third, thirdTransport = daemon.connect()
        frame = INT32.encode(b"x" * 9000)
        alone = INT32.decoder(10_000)
        alone.feed(frame[:8000])
        first.dataReceived(frame[:8000])
        second.dataReceived(frame[:8000])
        self.assertGreaterEqual(budget.held, 16_000)
        third.dataReceived(frame[:8000])
        self.assertTrue(thirdTransport.disconnecting)
        self.assertFalse(firstTransport.disconnecting or secondTransport.disconnecting)
        self.assertEqual(daemon.stats.disconnects[Reason.MAX_PARTIAL], 1)
        [line] = [line for line in self.logLines() if "--max-partial-bytes" in line]
        self.assertEqual(
            line,
            f"127.0.0.1:40003 holds {alone.held} bytes of an unfinished frame, which would take all "
            "clients' unfinished frames over --max-partial-bytes 20000; disconnecting",
        )
        self.assertEqual(third._decoder.held, 0)
        third.connectionLost(Failure(ConnectionDone()))
        first.dataReceived(frame[8000:])
        self.assertEqual(frames(secondTransport.value()), [b"x" * 9000])
        second.dataReceived(frame[:100])
        second.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((budget.held, second._decoder.held), (0, 0))

    def test_maxClients(self) -> None:
        """
        The connection past --max-clients is logged and closed as soon as it
        is made (by the protocol itself, so that it works under TLS too).
        """
        daemon = InMemoryDaemon(ServerConfig(maxClients=2))
        daemon.connect()
        daemon.connect()
        peer = IPv4Address("TCP", "10.0.0.9", 5555)
        refused = daemon.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        refused.makeConnection(transport)
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(daemon.factory.connections), 2)
        self.assertIn(
            "10.0.0.9:5555 refused: 2 clients connected, the limit of 2 (--max-clients, or what the open-file limit leaves)",
            self.logLines(),
        )
        self.assertEqual(daemon.stats.disconnects[Reason.MAX_CLIENTS], 1)

    def test_idleTimeout(self) -> None:
        """
        With --idle-timeout, a client that neither sends nor takes anything
        for a whole period is cut.
        """
        daemon = InMemoryDaemon(ServerConfig(idleTimeout=30))
        _, transport = daemon.connect()
        daemon.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        daemon.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(daemon.stats.disconnects[Reason.IDLE], 1)
        self.assertIn(
            "127.0.0.1:40001 sent and took nothing for --idle-timeout 30 s; disconnecting", self.logLines()
        )

    def test_trafficDefersIdleTimeout(self) -> None:
        """
        A client that sent something during the period is not cut at its end;
        it is cut after a later period with no traffic.
        """
        daemon = InMemoryDaemon(ServerConfig(idleTimeout=30))
        client, transport = daemon.connect()
        daemon.clock.advance(20)
        client.dataReceived(INT32.encode(b"still here"))
        daemon.clock.advance(10)
        self.assertFalse(transport.disconnecting)
        daemon.clock.advance(30)
        self.assertTrue(transport.disconnecting)

    def test_slowLargeFrameIsNotIdle(self) -> None:
        """
        A client that keeps sending the pieces of one large frame, slowly, is
        not idle, though no frame has completed yet.
        """
        daemon = InMemoryDaemon(ServerConfig(idleTimeout=30))
        client, transport = daemon.connect()
        client.dataReceived(INT32.header(1000))
        for _ in range(10):
            daemon.clock.advance(10)
            client.dataReceived(b"x" * 10)
        self.assertFalse(transport.disconnecting)

    def idleDaemonAcking(self, count: int) -> tuple[InMemoryDaemon, StringTransport, dict[str, int]]:
        """
        A daemon with --idle-timeout 30 and one client, whose TCP peer (as
        the kernel would say) has acknowledged C{acked["count"]} bytes.
        """
        acked = {"count": count}
        self.patch(server, "bytesAcked", lambda transport: acked["count"])
        daemon = InMemoryDaemon(ServerConfig(idleTimeout=30))
        _, transport = daemon.connect()
        return daemon, transport, acked

    def test_nonReaderIsIdleWhileTheStreamFlows(self) -> None:
        """
        Where the kernel tells what a TCP peer acknowledged, a client that
        sends nothing and whose peer acknowledges nothing new is cut after
        --idle-timeout, though the stream keeps being written to it.
        """
        daemon, transport, acked = self.idleDaemonAcking(500)
        for _ in range(6):
            daemon.clock.advance(5)
            daemon.hub.publish([b"tick"], INT32.encode(b"tick"), INT32)
        self.assertGreater(len(transport.value()), 0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(daemon.stats.disconnects[Reason.IDLE], 1)

    def test_acknowledgingReaderIsNotIdle(self) -> None:
        """
        A client that sends nothing but whose peer acknowledges new bytes in
        every period is not cut.
        """
        daemon, transport, acked = self.idleDaemonAcking(0)
        for _ in range(20):
            daemon.clock.advance(10)
            acked["count"] += 8
        self.assertFalse(transport.disconnecting)

    def test_noIdleTimeoutByDefault(self) -> None:
        """
        By default a silent listener is never cut.
        """
        daemon = InMemoryDaemon()
        _, transport = daemon.connect()
        daemon.clock.advance(86400)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(daemon.clock.getDelayedCalls(), [])
