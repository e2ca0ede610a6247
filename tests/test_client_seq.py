"""
Tests for L{streamd.client.seq}: it speaks version 2 and delivers the
messages of BATCH frames as of MSG frames; its timeouts (an attempt to
connect, and the wait for the server's HELLO) are bounded as the int32
client's are.  And for L{streamd.client.seqcli}, the command line's exit
status and what it says on stderr.  No reactor runs: time is a L{Clock},
connections are L{StringTransport}s.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.client import ConnectTimeout, HandshakeTimeout
from streamd.client.__main__ import ClientOptions
from streamd.client.seq import (
    ONE_STREAM_VERSION,
    NoHelloTimeout,
    SeqClientFactory,
    SeqClientProtocol,
    connect,
)
from streamd.client.seqcli import runSeq
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE
from streamd.reasons import Reason
from streamd.seqframing import (
    BATCH_LIMIT,
    STREAMS_VERSION,
    VERSION,
    Batch,
    Bye,
    ClientHello,
    Msg,
    Pong,
    Refused,
    ServerHello,
    Start,
    decodeClientFrame,
    framed,
)

from .support import onStringTransport


def connected(
    clock: Clock, timeout: float | None, tls: bool = False
) -> tuple[SeqClientProtocol, StringTransport]:
    """
    A seq client protocol whose factory times it on C{clock}, connected to
    a L{StringTransport} (that says it is a TLS one, with C{tls}).
    """
    factory = SeqClientFactory(lambda seq, payload: None, lambda gap, previous: None, lambda bye: None,
                               timeout=timeout, clock=clock)  # fmt: skip
    return onStringTransport(factory.buildProtocol(None), tls)


def ended(protocol: SeqClientProtocol, transport: StringTransport) -> BaseException:
    """
    Finish what C{abortConnection} started; the reason C{finished} gives.
    """
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionAborted()))
    reasons: list[BaseException] = []
    protocol.finished.addCallback(reasons.append)
    return reasons[0]


HELLO = framed(ServerHello(VERSION, b"epoch-01", 1, 0, 15_000))


class HelloTimeoutTests(SynchronousTestCase):
    """
    A connection on which the server's HELLO does not come in time is
    dropped, and says why.
    """

    def test_noHello(self) -> None:
        """
        Without TLS, no HELLO within the timeout (the port is not a seq
        listener: an int32 one's frames are ignored as unknown types) drops
        the connection with L{NoHelloTimeout}; the start of a frame does not
        end the wait.
        """
        clock = Clock()
        protocol, transport = connected(clock, 10)
        protocol.dataReceived(framed(ServerHello(VERSION, b"", 0, 0, 0))[:5])
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        reason = ended(protocol, transport)
        self.assertIsInstance(reason, NoHelloTimeout)
        self.assertEqual(str(reason), "no HELLO within 10 s")

    def test_noHandshake(self) -> None:
        """
        Over TLS, a handshake not completed within the timeout is a
        L{HandshakeTimeout}; once it completes, a missing HELLO is a
        L{NoHelloTimeout}.
        """
        clock = Clock()
        protocol, transport = connected(clock, 10, tls=True)
        clock.advance(10)
        self.assertIsInstance(ended(protocol, transport), HandshakeTimeout)
        protocol, transport = connected(clock, 10, tls=True)
        protocol.handshakeCompleted()
        clock.advance(10)
        self.assertIsInstance(ended(protocol, transport), NoHelloTimeout)

    def test_answered(self) -> None:
        """
        A HELLO, or a BYE, in time ends the wait; the connection may then be
        quiet as long as it likes.
        """
        clock = Clock()
        for answer in (HELLO, framed(Bye(Reason.AUTH_FAILED.value, "wrong token"))):
            protocol, transport = connected(clock, 10)
            protocol.dataReceived(answer)
            self.assertEqual(clock.getDelayedCalls(), [])
            protocol.connectionLost(Failure(ConnectionDone()))
            self.assertIsInstance(self.successResultOf(protocol.finished), ConnectionDone)

    def test_untimed(self) -> None:
        """
        Without a timeout nothing is timed.
        """
        clock = Clock()
        connected(clock, None)
        self.assertEqual(clock.getDelayedCalls(), [])


class ConnectTimeoutTests(SynchronousTestCase):
    """
    Each attempt to connect gives up after the timeout.
    """

    def endpoint(self, cancelled: list[object]) -> Any:
        class Endpoint:
            def connect(self, factory: object) -> Deferred[object]:
                return Deferred(cancelled.append)

        return Endpoint()

    def test_once(self) -> None:
        """
        A client that does not resume fails with L{ConnectTimeout}, the
        attempt cancelled.
        """
        clock = Clock()
        cancelled: list[object] = []
        client = connect(clock, self.endpoint(cancelled), lambda seq, payload: None, resume=False, timeout=10)
        connecting = client.whenConnected()
        clock.advance(10)
        reason = self.failureResultOf(connecting, ConnectTimeout)
        self.assertEqual((str(reason.value), len(cancelled)), ("no connection within 10 s", 1))
        self.successResultOf(client.stop())

    def test_resuming(self) -> None:
        """
        A resuming client gives up each attempt after the timeout, and
        tries again.
        """
        clock = Clock()
        cancelled: list[object] = []
        client = connect(
            clock,
            self.endpoint(cancelled),
            lambda seq, payload: None,
            timeout=10,
            retryPolicy=lambda attempt: 1,
        )
        clock.advance(10)
        clock.advance(1)
        clock.advance(10)
        self.assertEqual(len(cancelled), 2)
        client.stop()


class BatchTests(SynchronousTestCase):
    """
    The client asks for version 2 and delivers each message of a BATCH, in
    order, with its sequence number, once across frames and connections.
    """

    def setUp(self) -> None:
        self.got: list[tuple[int, bytes]] = []
        self.factory = SeqClientFactory(lambda seq, payload: self.got.append((seq, payload)),
                                        lambda gap, previous: None, lambda bye: None)  # fmt: skip

    def connect(self) -> tuple[SeqClientProtocol, StringTransport]:
        return onStringTransport(self.factory.buildProtocol(None))

    def test_announcesV3(self) -> None:
        """
        The client's HELLO says version 3.
        """
        _, transport = self.connect()
        hello = decodeClientFrame(transport.value()[4:])
        assert isinstance(hello, ClientHello)
        self.assertEqual(hello.version, ONE_STREAM_VERSION)
        self.assertEqual(ONE_STREAM_VERSION, 3)

    def test_batchesAndMsgs(self) -> None:
        """
        BATCH and MSG frames deliver their messages in order; after a
        reconnect the client resumes after the last one delivered, and
        what the server sends again is not delivered twice.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(
            HELLO
            + framed(Batch(1, (b"a", b"b")))
            + framed(Msg(3, b"c"))
            + framed(Batch(4, (b"d", b"e", b"f")))
        )
        self.assertEqual(self.got, [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d"), (5, b"e"), (6, b"f")])
        self.assertEqual(self.factory.position.last, 6)
        protocol.connectionLost(Failure(ConnectionDone()))
        again, transport = self.connect()
        hello = decodeClientFrame(transport.value()[4:])
        self.assertEqual(
            hello, ClientHello(ONE_STREAM_VERSION, Start.RESUME, b"epoch-01", 6, self.factory.identity)
        )
        again.dataReceived(HELLO + framed(Batch(5, (b"e", b"f", b"g"))))
        self.assertEqual(self.got[6:], [(7, b"g")])

    def test_stopsMidBatch(self) -> None:
        """
        A client whose connection is closing delivers no more of a BATCH:
        its position is the last message delivered.
        """
        protocol, transport = self.connect()

        def first(seq: int, payload: bytes) -> None:
            self.got.append((seq, payload))
            transport.loseConnection()

        self.factory.onMessage = first
        protocol.dataReceived(HELLO + framed(Batch(1, (b"a", b"b"))))
        self.assertEqual(self.got, [(1, b"a")])
        self.assertEqual(self.factory.position.last, 1)

    def test_frameLimit(self) -> None:
        """
        The client takes frames up to a whole BATCH's (or SBATCH's) size,
        or an SMSG of its largest message, whichever is bigger.
        """
        protocol, _ = self.connect()
        self.assertEqual(protocol.MAX_LENGTH, max(DEFAULT_MAX_MESSAGE_SIZE + 13, BATCH_LIMIT + 13))
        self.factory.maxMessageSize = 10 * BATCH_LIMIT
        self.assertEqual(self.factory.buildProtocol(None).MAX_LENGTH, 10 * BATCH_LIMIT + 13)


class _Endpoint:
    """
    An endpoint whose connections are on L{StringTransport}s (that say
    they are TLS ones, with C{tls}), kept in C{protocols}.
    """

    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.protocols: list[SeqClientProtocol] = []

    def connect(self, factory: SeqClientFactory) -> Deferred[SeqClientProtocol]:
        protocol, _ = onStringTransport(factory.buildProtocol(None), self.tls)
        self.protocols.append(protocol)
        return succeed(protocol)


class CommandLineTests(SynchronousTestCase):
    """
    C{python -m streamd.client --framing seq} exits 1, with one line on
    stderr, whenever it did not do what it was asked.
    """

    def start(self, *argv: str, tls: bool = False) -> tuple[Deferred[int], SeqClientProtocol]:
        """
        Run the seq client with C{argv} (C{--framing seq} added) on a
        L{Clock}, over TLS with C{tls}; the client's run, and its
        connection.
        """
        options = ClientOptions()
        options.parseOptions(["--framing", "seq", *argv])
        endpoint = _Endpoint(tls)
        self.err = io.StringIO()
        running = runSeq(Clock(), options, endpoint, None, io.StringIO(), self.err)
        return running, endpoint.protocols[0]

    def ended(self, running: Deferred[int], protocol: SeqClientProtocol) -> int:
        """
        Close the client's connection, as its transport would; its exit
        status.
        """
        protocol.connectionLost(Failure(ConnectionDone()))
        return self.successResultOf(running)

    def test_publishRefused(self) -> None:
        """
        A client that only sends, to a stream the server refuses it, exits
        1: what it sent is dropped.  The subscription's refusal, which
        comes before the PONG of the client's first PING, is told apart
        from the message's.
        """
        running, protocol = self.start("--stream", "nosuch", "--send", "x", "--count", "0")
        refusal = framed(Refused("nosuch", "no stream 'nosuch'"))
        protocol.dataReceived(framed(ServerHello(STREAMS_VERSION, b"", 1, 0, 0)) + refusal + framed(Pong()))
        self.assertNoResult(running)
        protocol.dataReceived(refusal + framed(Pong()))
        self.assertEqual(self.ended(running, protocol), 1)
        self.assertEqual(self.err.getvalue(), "streamd.client: refused nosuch: no stream 'nosuch'\n" * 2)

    def test_publishTaken(self) -> None:
        """
        A client that only sends, whose subscription alone is refused (it
        may publish to the stream, not read it), exits 0 once the server
        has taken what it sent.
        """
        running, protocol = self.start("--stream", "alerts", "--send", "x", "--count", "0")
        protocol.dataReceived(
            framed(ServerHello(STREAMS_VERSION, b"", 1, 0, 0))
            + framed(Refused("alerts", "this client may not read 'alerts'"))
            + framed(Pong())
            + framed(Pong())
        )
        self.assertEqual(self.ended(running, protocol), 0)

    def test_everySubscriptionRefused(self) -> None:
        """
        A client that reads exits 1 once the server has refused every
        subscription it asked for: nothing will come to print.  While one
        stands, it goes on.
        """
        running, protocol = self.start("--stream", "nosuch", "--stream", "other", "--count", "1")
        protocol.dataReceived(
            framed(ServerHello(STREAMS_VERSION, b"", 1, 0, 0)) + framed(Refused("nosuch", "no stream 'nosuch'"))
        )
        self.assertNoResult(running)
        protocol.dataReceived(framed(Refused("other", "this client may not read 'other'")) + framed(Pong()))
        self.assertEqual(self.ended(running, protocol), 1)
        self.assertEqual(
            self.err.getvalue(),
            "streamd.client: refused nosuch: no stream 'nosuch'\n"
            "streamd.client: refused other: this client may not read 'other'\n",
        )

    def test_closedBeforeHello(self) -> None:
        """
        A connection the server closes before its HELLO (an int32 or ascii10
        listener, which takes the client's HELLO for a bad frame) ends the
        client with status 1 and one line saying so, with a hint at the
        port, whether it reads or only sends, cleanly closed or not.
        """
        line = (
            "streamd.client: the server closed the connection before its HELLO:"
            " is 127.0.0.1:7000 a seq listener (framing=seq)?\n"
        )
        for argv, reason in (
            ((), ConnectionDone()),
            ((), ConnectionLost()),
            (("--send", "x", "--count", "0"), ConnectionDone()),
        ):
            running, protocol = self.start(*argv)
            protocol.connectionLost(Failure(reason))
            self.assertEqual((self.successResultOf(running), self.err.getvalue()), (1, line))

    def test_lostInHandshake(self) -> None:
        """
        A TLS connection lost before its handshake completed (a plain port)
        ends the client with status 1 and a hint that the port may not
        speak TLS.
        """
        running, protocol = self.start("--tls", tls=True)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(
            (self.successResultOf(running), self.err.getvalue()),
            (
                1,
                "streamd.client: connection to 127.0.0.1:7000 lost during the TLS handshake:"
                " is it a plain (non-TLS) port?\n",
            ),
        )
