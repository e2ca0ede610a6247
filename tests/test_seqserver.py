"""
Tests for L{streamd.seqserver}: where a client's stream starts, GAPs instead
of cuts, heartbeats, and a BYE before every close the daemon decides.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import FlowControl, ServerConfig
from streamd.fanout.history import FIRST
from streamd.fanout.hub import SWEEP_INTERVAL, Hub
from streamd.fanout.streams import Streams
from streamd.framing import ASCII10, DEFAULT_MAX_MESSAGE_SIZE, INT32
from streamd.reasons import Reason
from streamd.seqframing import (
    BATCH_LIMIT,
    SEQ,
    SEQ_BATCH,
    VERSION,
    Auth,
    Batch,
    Bye,
    ClientHello,
    Gap,
    GapReason,
    Msg,
    Ping,
    Pong,
    Pub,
    ServerFrame,
    ServerHello,
    Start,
    decodeServerFrame,
    framed,
)
from streamd.seqserver import SeqServerFactory, SeqServerProtocol
from streamd.server import StreamServerFactory
from streamd.session import BYE_GRACE, MAX_UNANSWERED_PINGS
from streamd.stats import Stats

from .support import frames

EPOCH = b"epoch-01"
MAX = DEFAULT_MAX_MESSAGE_SIZE
V1 = 1
"""
The version the tests of the MSG-only stream speak: what clients older than
BATCH see.
"""


class SeqDaemon:
    """
    A hub with a seq listener on a L{Clock}; clients on L{StringTransport}s.
    """

    def __init__(self, config: ServerConfig | None = None, flow: FlowControl | None = None) -> None:
        self.clock = Clock()
        self.streams = Streams(Stats(), self.clock, flow or FlowControl())
        self.hub = self.streams.default
        self.hub.history.epoch = EPOCH
        self.factory = SeqServerFactory(
            self.hub, self.clock, config or ServerConfig(heartbeat=None), SEQ, streams=self.streams
        )
        self._port = 40000

    def connect(self, *hello: object) -> tuple[SeqServerProtocol, StringTransport]:
        """
        A new client, which sends each frame of C{hello}.
        """
        self._port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._port)
        protocol = self.factory.buildProtocol(peer)
        assert isinstance(protocol, SeqServerProtocol)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        for frame in hello:
            protocol.dataReceived(framed(frame))  # type: ignore[arg-type]
        return protocol, transport

    def publish(self, *batches: list[bytes]) -> None:
        """
        Publish each batch as one history entry.
        """
        for batch in batches:
            self.hub.publish(batch)


def received(transport: StringTransport) -> list[ServerFrame]:
    """
    The frames sent to C{transport} so far, which are then forgotten.
    """
    data = transport.value()
    transport.clear()
    return [decodeServerFrame(f) for f in frames(data)]


def numbered(first: int, last: int) -> list[Msg]:
    """
    The MSG frames of messages C{b"m<seq>"} from C{first} to C{last}.
    """
    return [Msg(seq, b"m%d" % seq) for seq in range(first, last + 1)]


def messages(first: int, last: int) -> list[bytes]:
    return [b"m%d" % seq for seq in range(first, last + 1)]


def newest() -> ClientHello:
    return ClientHello(V1, Start.NEWEST, bytes(8), 0)


class StartTests(SynchronousTestCase):
    """
    A client's HELLO says where its stream starts.
    """

    def setUp(self) -> None:
        self.daemon = SeqDaemon()

    def test_largePubWithHello(self) -> None:
        """
        A message over a token's size (4 KiB) published in the same read as
        the HELLO is published, under the limit the HELLO brings, not
        refused as an oversized frame (the Python client sends both at once).
        """
        protocol, _ = self.daemon.connect()
        _, reader = self.daemon.connect(newest())
        protocol.dataReceived(framed(newest()) + framed(Pub(b"x" * 100_000)))
        self.assertEqual(received(reader)[1:], [Msg(1, b"x" * 100_000)])

    def test_nothingBeforeHello(self) -> None:
        """
        A client is sent nothing until its HELLO, then the server's HELLO
        and the messages published from then on.
        """
        protocol, transport = self.daemon.connect()
        self.daemon.publish(messages(1, 2))
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(framed(newest()))
        self.daemon.publish(messages(3, 4))
        self.assertEqual(received(transport), [ServerHello(V1, EPOCH, 1, 2, 0, MAX), *numbered(3, 4)])

    def test_resume(self) -> None:
        """
        A client resuming after message 4 gets 5 on, in order and once,
        though 4 and 5 were published together, then the live stream.
        """
        self.daemon.publish(messages(1, 3), messages(4, 6), messages(7, 10))
        _, transport = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 4))
        self.daemon.publish(messages(11, 11))
        self.assertEqual(received(transport), [ServerHello(V1, EPOCH, 1, 10, 0, MAX), *numbered(5, 11)])

    def test_resumeUpToDate(self) -> None:
        """
        A client that has every message gets only the live stream.
        """
        self.daemon.publish(messages(1, 3))
        _, transport = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 3))
        self.daemon.publish(messages(4, 4))
        self.assertEqual(received(transport)[1:], numbered(4, 4))

    def test_lastN(self) -> None:
        """
        A client asking for the last 3 messages gets them, then the live
        stream; asking for more than were ever published is no gap.
        """
        self.daemon.publish(messages(1, 5), messages(6, 10))
        _, transport = self.daemon.connect(ClientHello(V1, Start.LAST, bytes(8), 3))
        _, everything = self.daemon.connect(ClientHello(V1, Start.LAST, bytes(8), 100))
        self.assertEqual(received(transport)[1:], numbered(8, 10))
        self.assertEqual(received(everything)[1:], numbered(1, 10))

    def test_olderThanHistory(self) -> None:
        """
        What a client asks for that left the history is one GAP, then it
        gets everything held.
        """
        daemon = SeqDaemon(flow=FlowControl(history=40))
        daemon.publish(*[messages(seq, seq) for seq in range(1, 21)])
        oldest = daemon.hub.history.oldestEntry()
        assert oldest is not None
        _, transport = daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 2))
        got = received(transport)
        self.assertEqual(got[1], Gap(3, oldest[FIRST] - 1, GapReason.EVICTED))
        self.assertEqual(got[2:], numbered(oldest[FIRST], 20))

    def test_restarted(self) -> None:
        """
        A client resuming from another epoch (a daemon that restarted) is
        told with a GAP that its position is gone, covering none of this
        epoch's messages, then gets every message this epoch holds and the
        live stream: nothing published since the restart is skipped.
        """
        self.daemon.publish(messages(1, 7))
        _, transport = self.daemon.connect(ClientHello(V1, Start.RESUME, b"previous", 5000))
        self.daemon.publish(messages(8, 8))
        self.assertEqual(
            received(transport),
            [ServerHello(V1, EPOCH, 1, 7, 0, MAX), Gap(1, 0, GapReason.RESTARTED), *numbered(1, 8)],
        )

    def test_restartedAfterEviction(self) -> None:
        """
        After a restart, what this epoch published and no longer holds is
        part of the RESTARTED gap.
        """
        daemon = SeqDaemon(flow=FlowControl(history=100))
        for seq in range(1, 21):
            daemon.publish([b"m%d" % seq])
        oldest = daemon.hub.history.oldestEntry()
        assert oldest is not None
        _, transport = daemon.connect(ClientHello(V1, Start.RESUME, b"previous", 5000))
        got = received(transport)
        self.assertEqual(got[1], Gap(1, oldest[FIRST] - 1, GapReason.RESTARTED))
        self.assertEqual(got[2:], numbered(oldest[FIRST], 20))

    def test_newerVersionAnsweredWithOurs(self) -> None:
        """
        A client that speaks a newer version is answered with the version
        this server speaks.
        """
        _, transport = self.daemon.connect(ClientHello(VERSION + 5, Start.NEWEST, bytes(8), 0))
        hello = received(transport)[0]
        assert isinstance(hello, ServerHello)
        self.assertEqual(hello.version, VERSION)

    def test_publishReachesOthers(self) -> None:
        """
        A PUB reaches other seq clients as a MSG and int32 clients as a
        plain frame, not the sender.
        """
        sender, senderTransport = self.daemon.connect(newest())
        _, seqTransport = self.daemon.connect(newest())
        plain = StreamServerFactory(self.daemon.hub, self.daemon.clock).buildProtocol(None)  # type: ignore[arg-type]
        plainTransport = StringTransport()
        plain.makeConnection(plainTransport)
        received(senderTransport)
        received(seqTransport)
        sender.dataReceived(framed(Pub(b"one")) + framed(Pub(b"two")))
        self.assertEqual(received(seqTransport), [Msg(1, b"one"), Msg(2, b"two")])
        self.assertEqual(frames(plainTransport.value(), INT32), [b"one", b"two"])
        self.assertEqual(received(senderTransport), [])


def delivered(frames: list[ServerFrame]) -> list[tuple[int, bytes]]:
    """
    The messages of the MSG and BATCH frames among C{frames}, in order, with
    their sequence numbers.
    """
    out: list[tuple[int, bytes]] = []
    for frame in frames:
        if isinstance(frame, Msg):
            out.append((frame.seq, frame.payload))
        elif isinstance(frame, Batch):
            out.extend(enumerate(frame.payloads, frame.first))
    return out


def hello2(start: Start = Start.NEWEST, epoch: bytes = bytes(8), position: int = 0) -> ClientHello:
    return ClientHello(2, start, epoch, position)


class BatchTests(SynchronousTestCase):
    """
    A version 2 client gets each int32 entry of the history as one BATCH
    frame, and bigger entries and ascii10 ones as MSG frames; a version 1
    client gets only MSG frames.
    """

    def setUp(self) -> None:
        self.daemon = SeqDaemon()

    def publishMixed(self) -> bytes:
        """
        Publish messages 1-2 and 5 as int32 entries, 3 as an entry over
        L{BATCH_LIMIT}, 4 as an ascii10 entry; return message 3.
        """
        big = b"b" * BATCH_LIMIT
        self.daemon.publish([b"m1", b"m2"], [big])
        self.daemon.hub.publish([b"m4"], ASCII10.encodeMany([b"m4"]), ASCII10)
        self.daemon.publish([b"m5"])
        return big

    def expected(self, big: bytes, first: int = 1) -> list[tuple[int, bytes]]:
        return [(seq, big if seq == 3 else b"m%d" % seq) for seq in range(first, 6)]

    def test_v1MsgOnly(self) -> None:
        """
        A version 1 client is answered version 1 and gets MSG frames only,
        live and resumed.
        """
        _, live = self.daemon.connect(ClientHello(V1, Start.NEWEST, bytes(8), 0))
        big = self.publishMixed()
        _, resumed = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 0))
        for transport in (live, resumed):
            hello, *rest = received(transport)
            self.assertEqual(hello, ServerHello(V1, EPOCH, 1, 0 if transport is live else 5, 0, MAX))
            self.assertTrue(all(isinstance(frame, Msg) for frame in rest))
            self.assertEqual(delivered(rest), self.expected(big))

    def test_v2Batches(self) -> None:
        """
        A version 2 client is answered version 2 and gets a BATCH for each
        int32 entry (its bytes as they came in, after the BATCH header) and
        MSG frames for the big and ascii10 ones, live and resumed, numbered
        1 to 5 in order.
        """
        _, live = self.daemon.connect(hello2())
        big = self.publishMixed()
        _, resumed = self.daemon.connect(hello2(Start.RESUME, EPOCH, 0))
        for transport in (live, resumed):
            data = transport.value()
            self.assertIn(INT32.encodeMany([b"m1", b"m2"]), data)
            hello, *rest = received(transport)
            self.assertEqual(hello.version, 2)  # type: ignore[union-attr]
            self.assertEqual([type(frame) for frame in rest], [Batch, Msg, Msg, Batch])
            self.assertEqual(delivered(rest), self.expected(big))

    def test_v1AndV2Together(self) -> None:
        """
        Clients of both versions on one listener each get their own
        encoding of the same entries.
        """
        _, v1 = self.daemon.connect(ClientHello(V1, Start.NEWEST, bytes(8), 0))
        _, v2 = self.daemon.connect(hello2())
        self.daemon.publish(messages(1, 3), messages(4, 4))
        self.assertEqual(received(v1)[1:], numbered(1, 4))
        self.assertEqual(received(v2)[1:], [Batch(1, (b"m1", b"m2", b"m3")), Batch(4, (b"m4",))])

    def test_resumeMidBatch(self) -> None:
        """
        A version 2 client resuming inside an entry gets the rest of it as
        MSG frames, then the next entries as BATCHes, once each and in
        order; a LAST N likewise.
        """
        self.daemon.publish(messages(1, 4), messages(5, 7))
        _, resumed = self.daemon.connect(hello2(Start.RESUME, EPOCH, 2))
        _, last = self.daemon.connect(hello2(Start.LAST, bytes(8), 4))
        self.daemon.publish(messages(8, 9))
        self.assertEqual(
            received(resumed)[1:],
            [*numbered(3, 4), Batch(5, (b"m5", b"m6", b"m7")), Batch(8, (b"m8", b"m9"))],
        )
        self.assertEqual(
            received(last)[1:], [*numbered(4, 4), Batch(5, (b"m5", b"m6", b"m7")), Batch(8, (b"m8", b"m9"))]
        )

    def test_cursorFramingByVersion(self) -> None:
        """
        The version decides the cursor's framing, which the hub serves it
        by; the listener's framing stays L{SEQ}.
        """
        v1, _ = self.daemon.connect(ClientHello(V1, Start.NEWEST, bytes(8), 0))
        v2, _ = self.daemon.connect(hello2())
        self.assertIs(v1.cursor.framing, SEQ)
        self.assertIs(v2.cursor.framing, SEQ_BATCH)
        self.assertIs(v2.framing, SEQ)

    def test_publishedBySeqClient(self) -> None:
        """
        What a seq client publishes reaches a version 2 client as a BATCH.
        """
        sender, _ = self.daemon.connect(hello2())
        _, transport = self.daemon.connect(hello2())
        received(transport)
        sender.dataReceived(framed(Pub(b"one")) + framed(Pub(b"two")))
        self.assertEqual(received(transport), [Batch(1, (b"one", b"two"))])


class IdentityTests(SynchronousTestCase):
    """
    A client that names itself in its HELLO is not sent back, when it
    resumes, what it published on an earlier connection, as it is not sent
    it live.
    """

    def setUp(self) -> None:
        self.daemon = SeqDaemon()

    def publishAs(self, identity: bytes, *batches: list[bytes]) -> None:
        """
        Connect as C{identity}, publish each batch in a read of its own,
        and leave.
        """
        protocol, transport = self.daemon.connect(ClientHello(V1, Start.NEWEST, bytes(8), 0, identity))
        for batch in batches:
            protocol.dataReceived(b"".join(framed(Pub(payload)) for payload in batch))
        self.assertEqual(received(transport)[1:], [])
        protocol.connectionLost()

    def test_ownNotReplayed(self) -> None:
        """
        Resumed, a client gets the others' messages published since its
        position, not its own; another client, or one that names no
        identity, gets all.
        """
        self.daemon.publish(messages(1, 2))
        self.publishAs(b"client-a", messages(3, 5))
        self.daemon.publish(messages(6, 7))
        self.publishAs(b"client-a", messages(8, 8))
        self.daemon.publish(messages(9, 9))
        _, resumed = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 3, b"client-a"))
        _, inside = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 1, b"client-a"))
        _, other = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 1, b"client-b"))
        _, anonymous = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 1))
        self.assertEqual(received(resumed)[1:], [*numbered(6, 7), *numbered(9, 9)])
        self.assertEqual(received(inside)[1:], [*numbered(2, 2), *numbered(6, 7), *numbered(9, 9)])
        self.assertEqual(received(other)[1:], numbered(2, 9))
        self.assertEqual(received(anonymous)[1:], numbered(2, 9))

    def test_partialEntry(self) -> None:
        """
        A client resuming inside an entry of its own gets none of it.
        """
        self.publishAs(b"client-a", messages(1, 3))
        self.daemon.publish(messages(4, 4))
        _, resumed = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 1, b"client-a"))
        self.assertEqual(received(resumed)[1:], numbered(4, 4))

    def test_zeroIsNoIdentity(self) -> None:
        """
        An identity of zeros names no one: such a client gets everything.
        """
        self.publishAs(bytes(8), messages(1, 2))
        _, resumed = self.daemon.connect(ClientHello(V1, Start.RESUME, EPOCH, 0, bytes(8)))
        self.assertEqual(received(resumed)[1:], numbered(1, 2))


class GapTests(SynchronousTestCase):
    """
    A seq client whose position leaves the history gets a GAP, not a cut.
    """

    def behindClient(self, config: ServerConfig) -> tuple[SeqDaemon, SeqServerProtocol, StringTransport]:
        daemon = SeqDaemon(config, FlowControl(history=100))
        protocol, transport = daemon.connect(newest())
        received(transport)
        daemon.publish(messages(1, 1))
        protocol.cursor.pauseProducing()
        daemon.clock.advance(5)
        daemon.publish(*[messages(seq, seq) for seq in range(2, 41)])
        daemon.clock.advance(SWEEP_INTERVAL)
        return daemon, protocol, transport

    def test_gapThenOldest(self) -> None:
        """
        The evicted client is sent the GAP over exactly what it missed,
        then everything held, then the live stream; it stays connected.
        """
        daemon, protocol, transport = self.behindClient(ServerConfig(heartbeat=None))
        oldest = daemon.hub.history.oldestEntry()
        assert oldest is not None
        protocol.cursor.resumeProducing()
        daemon.publish(messages(41, 41))
        self.assertEqual(
            received(transport),
            [*numbered(1, 1), Gap(2, oldest[FIRST] - 1, GapReason.EVICTED), *numbered(oldest[FIRST], 41)],
        )
        self.assertFalse(transport.disconnecting)

    def test_disconnectInstead(self) -> None:
        """
        With C{seqGaps} off, the evicted client gets a BYE and is closed.
        """
        daemon, protocol, transport = self.behindClient(ServerConfig(heartbeat=None, seqGaps=False))
        self.assertEqual(received(transport)[-1], Bye(Reason.EVICTED.value, "fell out of the history"))
        self.assertTrue(transport.disconnecting)


class ByeTests(SynchronousTestCase):
    """
    Every close the daemon decides is preceded by a BYE saying why.
    """

    def assertBye(self, transport: StringTransport, reason: Reason) -> None:
        last = received(transport)[-1]
        assert isinstance(last, Bye), last
        self.assertEqual(last.code, reason.value)
        self.assertTrue(transport.disconnecting)

    def tokenPolicy(self, **kwargs: bool) -> AccessPolicy:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "token")
        with open(path, "wb") as f:
            f.write(b"secret\n")
        return AccessPolicy(auth=TokenFile(path), **kwargs)

    def test_readOnly(self) -> None:
        """
        A client of a read-only daemon that publishes gets BYE READ_ONLY.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, access=AccessPolicy(readOnly=True)))
        protocol, transport = daemon.connect(newest())
        protocol.dataReceived(framed(Pub(b"no")))
        self.assertBye(transport, Reason.READ_ONLY)

    def test_wrongToken(self) -> None:
        """
        A wrong token gets BYE AUTH_FAILED; the right one gets the stream.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, access=self.tokenPolicy()))
        _, wrong = daemon.connect(Auth(b"guess"), newest())
        self.assertBye(wrong, Reason.AUTH_FAILED)
        _, right = daemon.connect(newest(), Auth(b"secret"))
        daemon.publish(messages(1, 1))
        self.assertEqual(received(right)[1:], numbered(1, 1))

    def test_authTimeout(self) -> None:
        """
        A client that sends no token in time gets BYE AUTH_TIMEOUT.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, access=self.tokenPolicy(), authTimeout=2))
        _, transport = daemon.connect(newest())
        daemon.clock.advance(2)
        self.assertBye(transport, Reason.AUTH_TIMEOUT)

    def test_oversizedFrame(self) -> None:
        """
        A frame over the limit gets BYE OVERSIZED_FRAME; before HELLO the
        limit is the token's.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, maxMessageSize=100))
        protocol, transport = daemon.connect(newest())
        protocol.dataReceived(framed(Pub(b"x" * 100)))
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(framed(Pub(b"x" * 101)))
        self.assertBye(transport, Reason.OVERSIZED_FRAME)
        protocol, early = daemon.connect()
        protocol.dataReceived(INT32.header(10_000))
        self.assertBye(early, Reason.OVERSIZED_FRAME)

    def test_oversizedWithHello(self) -> None:
        """
        A PUB over the message size limit that comes in one read with the
        HELLO, and so is framed under the larger limit before it, gets BYE
        OVERSIZED_FRAME too, and is not published.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, maxMessageSize=100))
        protocol, transport = daemon.connect()
        protocol.dataReceived(framed(newest()) + framed(Pub(b"x" * 101)))
        self.assertBye(transport, Reason.OVERSIZED_FRAME)
        self.assertEqual(
            (daemon.hub.history.nextSequence, daemon.hub.stats.disconnects[Reason.OVERSIZED_FRAME]), (1, 1)
        )

    def test_outOfTurn(self) -> None:
        """
        PUB before HELLO, a second HELLO, or a malformed HELLO get BYE.
        """
        daemon = SeqDaemon()
        _, early = daemon.connect(Pub(b"x"))
        self.assertBye(early, Reason.BAD_REQUEST)
        _, twice = daemon.connect(newest(), newest())
        self.assertBye(twice, Reason.BAD_REQUEST)
        protocol, short = daemon.connect()
        protocol.dataReceived(INT32.encode(b"\x01\x01"))
        self.assertBye(short, Reason.BAD_FRAME)

    def test_idle(self) -> None:
        """
        A client idle for a whole --idle-timeout after its HELLO gets BYE
        IDLE.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, idleTimeout=3))
        _, transport = daemon.connect(newest())
        daemon.clock.advance(2.9)
        self.assertFalse(transport.disconnecting)
        daemon.clock.advance(0.1)
        self.assertBye(transport, Reason.IDLE)

    def test_slowConsumer(self) -> None:
        """
        A client over --max-pending gets BYE MAX_PENDING after the frame it
        was sent.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None), FlowControl(maxBehind=10))
        protocol, transport = daemon.connect(newest())
        protocol.cursor.pauseProducing()
        daemon.publish(messages(1, 20))
        daemon.clock.advance(SWEEP_INTERVAL)
        self.assertBye(transport, Reason.MAX_PENDING)

    def test_shutdown(self) -> None:
        """
        At shutdown a client gets what it is behind by, then BYE SHUTDOWN.
        """
        daemon = SeqDaemon()
        protocol, transport = daemon.connect(newest())
        protocol.cursor.pauseProducing()
        daemon.publish(messages(1, 2))
        protocol.session.close()
        protocol.cursor.resumeProducing()
        got = received(transport)
        self.assertEqual(
            got[1:], [*numbered(1, 2), Bye(Reason.SHUTDOWN.value, "the daemon is shutting down")]
        )
        self.assertTrue(transport.disconnecting)

    def test_shutdownByeLast(self) -> None:
        """
        What others publish while a client that is behind takes its backlog
        at shutdown comes before its BYE, never after.
        """
        daemon = SeqDaemon()
        protocol, transport = daemon.connect(newest())
        protocol.cursor.pauseProducing()
        daemon.publish(messages(1, 2))
        protocol.session.close()
        daemon.publish(messages(3, 3))
        protocol.cursor.resumeProducing()
        got = received(transport)
        self.assertEqual(
            got[1:], [*numbered(1, 3), Bye(Reason.SHUTDOWN.value, "the daemon is shutting down")]
        )
        self.assertTrue(transport.disconnecting)

    def test_maxClients(self) -> None:
        """
        A connection over --max-clients gets BYE MAX_CLIENTS.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, maxClients=1))
        daemon.connect()
        refused = daemon.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertBye(transport, Reason.MAX_CLIENTS)

    def test_graceThenAbort(self) -> None:
        """
        A client that does not take its BYE is aborted after the grace.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, access=AccessPolicy(readOnly=True)))
        protocol, transport = daemon.connect(newest(), Pub(b"no"))
        self.assertFalse(transport.disconnected)
        daemon.clock.advance(5)
        self.assertTrue(transport.disconnected)

    @settings(max_examples=2 * settings().max_examples, deadline=None)
    @given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=4))
    def test_anyBytes(self, data: bytes, cuts: list[int]) -> None:
        """
        Whatever bytes a client sends, in whatever reads, the server takes
        its frames or ends with a BYE and a close, never an exception.
        """
        daemon = SeqDaemon(ServerConfig(heartbeat=None, maxMessageSize=64))
        protocol, transport = daemon.connect()
        points = sorted(c for c in cuts if c <= len(data))
        for start, stop in zip([0, *points], [*points, len(data)], strict=True):
            protocol.dataReceived(data[start:stop])
        for frame in received(transport):
            self.assertIsInstance(frame, (ServerHello, Msg, Gap, Bye))
            if isinstance(frame, Bye):
                self.assertTrue(transport.disconnecting)


class HeartbeatTests(SynchronousTestCase):
    """
    A silent connection is PINGed; a client that answers no PING is cut.
    """

    def setUp(self) -> None:
        self.daemon = SeqDaemon(ServerConfig(heartbeat=15))
        self.protocol, self.transport = self.daemon.connect(newest())
        hello = received(self.transport)[0]
        assert isinstance(hello, ServerHello)
        self.assertEqual(hello.heartbeat, 15_000)

    def test_cutAfterTwo(self) -> None:
        """
        Two unanswered PINGs, and the client is cut at the next heartbeat.
        """
        self.daemon.clock.advance(15)
        self.assertEqual(received(self.transport), [Ping()])
        self.daemon.clock.advance(15)
        self.assertEqual(received(self.transport), [Ping()])
        self.daemon.clock.advance(15)
        self.assertEqual(
            received(self.transport), [Bye(Reason.NO_PONG.value, "did not answer two PINGs (--heartbeat)")]
        )
        self.assertTrue(self.transport.disconnecting)

    def test_stopsAnswering(self) -> None:
        """
        A client that answered, then stops (its process hangs), is cut two
        heartbeats after its last answer, with BYE NO_PONG.
        """
        for _ in range(3):
            self.daemon.clock.advance(15)
            self.assertEqual(received(self.transport), [Ping()])
            self.protocol.dataReceived(framed(Pong()))
        self.daemon.clock.advance(15)
        self.assertEqual(received(self.transport), [Ping()])
        self.daemon.clock.advance(15)
        self.assertEqual(received(self.transport), [Ping()])
        self.assertFalse(self.transport.disconnecting)
        self.daemon.clock.advance(15)
        self.assertEqual(
            received(self.transport), [Bye(Reason.NO_PONG.value, "did not answer two PINGs (--heartbeat)")]
        )
        self.assertTrue(self.transport.disconnecting)
        self.daemon.clock.advance(BYE_GRACE)
        self.assertTrue(self.transport.disconnected)

    def test_answered(self) -> None:
        """
        A client that answers every PING stays.
        """
        for _ in range(5):
            self.daemon.clock.advance(15)
            self.assertEqual(received(self.transport), [Ping()])
            self.protocol.dataReceived(framed(Pong()))
        self.assertFalse(self.transport.disconnecting)

    def test_onlyWhenSilent(self) -> None:
        """
        No PING while the stream sends something each heartbeat.
        """
        for seq in range(1, 5):
            self.daemon.publish([b"m%d" % seq])
            self.daemon.clock.advance(15)
        self.assertEqual(received(self.transport), numbered(1, 4))
        self.assertFalse(self.transport.disconnecting)


class PingTests(SynchronousTestCase):
    """
    A client's PING (version 3) is answered with a PONG in order with the
    stream; one that sends PINGs and does not read the PONGs is cut.
    """

    def setUp(self) -> None:
        self.daemon = SeqDaemon()

    def flood(self, protocol: SeqServerProtocol, transport: StringTransport, pings: int) -> list[ServerFrame]:
        """
        Send C{pings} PINGs, each in a read of its own; what the client was
        sent.
        """
        for _ in range(pings):
            protocol.dataReceived(framed(Ping()))
        return received(transport)

    def test_answered(self) -> None:
        """
        A PING of version 3 gets a PONG after the stream published before
        it; one of version 1 or 2 gets none, as the spec says.
        """
        protocol, transport = self.daemon.connect(ClientHello(3, Start.NEWEST, bytes(8), 0))
        self.daemon.publish(messages(1, 1))
        self.assertEqual(self.flood(protocol, transport, 1)[1:], [Batch(1, (b"m1",)), Pong()])
        for version in (1, 2):
            protocol, transport = self.daemon.connect(ClientHello(version, Start.NEWEST, bytes(8), 0))
            self.assertEqual(self.flood(protocol, transport, 3)[1:], [])
            self.assertFalse(transport.disconnecting)

    def test_readerNotCut(self) -> None:
        """
        A client that takes its PONGs may send any number of PINGs.
        """
        protocol, transport = self.daemon.connect(ClientHello(3, Start.NEWEST, bytes(8), 0))
        received(transport)
        for _ in range(MAX_UNANSWERED_PINGS * 4):
            protocol.cursor.pauseProducing()
            protocol.dataReceived(framed(Ping()))
            protocol.cursor.resumeProducing()
        self.assertEqual(received(transport), [Pong()] * MAX_UNANSWERED_PINGS * 4)
        self.assertFalse(transport.disconnecting)

    def test_catchingUpNotCut(self) -> None:
        """
        A client whose PONGs wait behind a backlog it is taking (its
        connection took bytes since its last PING) is not cut, however many
        PINGs it sends: it reads.
        """
        protocol, transport = self.daemon.connect(ClientHello(3, Start.NEWEST, bytes(8), 0))
        received(transport)
        cursor = protocol.cursor
        cursor.pauseProducing()
        for _ in range(MAX_UNANSWERED_PINGS * 4):
            protocol.dataReceived(framed(Ping()))
            # What the connection took of the backlog since that PING.
            cursor.written += 100
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.daemon.hub.stats.disconnects[Reason.PING_FLOOD], 0)

    def assertFloodCut(self, protocol: SeqServerProtocol, transport: StringTransport) -> None:
        """
        While the connection takes nothing, the client's PINGs are answered
        until L{MAX_UNANSWERED_PINGS} more than the first wait unsent; the
        next gets BYE PING_FLOOD, after the PONGs held.
        """
        self.assertEqual(self.flood(protocol, transport, MAX_UNANSWERED_PINGS + 1), [])
        self.assertFalse(transport.disconnecting)
        sent = self.flood(protocol, transport, 1000)
        self.assertEqual(sent[-1], Bye(Reason.PING_FLOOD.value, Reason.PING_FLOOD.summary))
        self.assertLessEqual(len(sent), MAX_UNANSWERED_PINGS + 2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.daemon.hub.stats.disconnects[Reason.PING_FLOOD], 1)

    def test_floodCut(self) -> None:
        """
        A client of one stream that sends PINGs while its connection takes
        nothing is cut with BYE PING_FLOOD, holding a bounded number of
        PONGs.
        """
        protocol, transport = self.daemon.connect(ClientHello(3, Start.NEWEST, bytes(8), 0))
        received(transport)
        protocol.cursor.pauseProducing()
        self.assertFloodCut(protocol, transport)

    def test_floodCutSeveralStreams(self) -> None:
        """
        So is a client of several streams, whose PONGs its mux holds.
        """
        protocol, transport = self.daemon.connect(ClientHello(VERSION, Start.NONE, bytes(8), 0))
        received(transport)
        mux = protocol.session.subscriptions.mux  # type: ignore[union-attr]
        mux.pauseProducing()
        self.assertFloodCut(protocol, transport)


class EpochTests(SynchronousTestCase):
    """
    Each history has its own random epoch.
    """

    def test_random(self) -> None:
        """
        Two daemons started one after the other have different epochs.
        """
        first, second = Hub(Stats(), Clock()), Hub(Stats(), Clock())
        self.assertEqual(len(first.history.epoch), 8)
        self.assertNotEqual(first.history.epoch, second.history.epoch)
