"""
Tests for L{streamd._internals}: the switches of the shortcuts through
Twisted's internals, and one contract test for each internal the C{fastWrite}
and C{bigReads} shortcuts borrow (those of C{acceptFirst} need a listening
socket: L{tests.integration.test_internals}), each of which checks what the
internal does, so that it fails on a Twisted where that changed.
"""

from __future__ import annotations

import socket

from twisted.internet import abstract, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.reflect import namedAny
from twisted.trial.unittest import SynchronousTestCase

from streamd import _internals
from streamd.config import Shortcuts
from streamd.reads import READ_SIZE

from .test_socketcursor import PullRecorder, socketPair

CONTRACTS = {
    "twisted.internet.tcp.Connection.socket": "tests.test_internals.FastWriteContractTests.test_socket",
    "twisted.internet.abstract.FileDescriptor.startWriting":
        "tests.test_internals.FastWriteContractTests.test_startWriting",
    "twisted.internet.abstract.FileDescriptor.doWrite (resumes a pull producer when empty)":
        "tests.test_internals.FastWriteContractTests.test_writableResumesPullProducer",
    "twisted.internet.abstract.FileDescriptor.doWrite (sends its buffer before it resumes a pull producer)":
        "tests.test_internals.FastWriteContractTests.test_bufferSentBeforePullProducer",
    "twisted.internet.abstract.FileDescriptor.bufferSize":
        "tests.test_internals.BigReadsContractTests.test_bufferSizeIsTheReadSize",
    "twisted.internet.tcp._accept": "tests.integration.test_internals.AcceptFirstContractTests.test_accept",
    "twisted.internet.tcp._BuffersLogs":
        "tests.integration.test_internals.AcceptFirstContractTests.test_buffersLogs",
    "twisted.internet.tcp._reservedFD":
        "tests.integration.test_internals.AcceptFirstContractTests.test_reservedFD",
    "twisted.internet.tcp.Port._logger": "tests.integration.test_internals.AcceptFirstContractTests.test_logger",
    "twisted.internet.tcp.Port._realPortNumber":
        "tests.integration.test_internals.AcceptFirstContractTests.test_realPortNumber",
    "twisted.internet.tcp.Port._buildAddr":
        "tests.integration.test_internals.AcceptFirstContractTests.test_buildAddr",
    "twisted.internet.tcp.Port.sessionno":
        "tests.integration.test_internals.AcceptFirstContractTests.test_sessionno",
    "twisted.internet.tcp.Port.transport":
        "tests.integration.test_internals.AcceptFirstContractTests.test_transport",
    "twisted.internet.tcp.Port.doRead (what it does with each connection)":
        "tests.integration.test_internals.AcceptFirstContractTests.test_setUpAsTwistedDoes",
    **dict.fromkeys(_internals.NATS_BORROWED, "tests.integration.test_internals.NatsContractTests.test_stopConsumerTasks"),
}  # fmt: skip
"""
The contract test of each borrowed name.
"""


class FenceTests(SynchronousTestCase):
    """
    The fence: which shortcuts are taken, and what it lists.
    """

    def setUp(self) -> None:
        self.patch(_internals, "_checked", False)
        self.patch(_internals, "_inForce", Shortcuts())

    def test_everyBorrowedNameHasAContract(self) -> None:
        """
        Every name that L{_internals.BORROWED} and L{_internals.NATS_BORROWED}
        list, and no other, has a contract test, and each shortcut of
        L{Shortcuts} lists its names.
        """
        borrowed = [name for names in _internals.BORROWED.values() for name in names]
        borrowed += _internals.NATS_BORROWED
        self.assertEqual(sorted(CONTRACTS), sorted(borrowed))
        self.assertEqual(sorted(_internals.BORROWED), sorted(vars(Shortcuts())))
        for test in CONTRACTS.values():
            self.assertTrue(callable(namedAny(test)), test)

    def test_refusal(self) -> None:
        """
        C{STREAMD_FASTWRITE=0} or a Twisted outside L{TESTED_TWISTED} (both
        ends included) forbid every shortcut, and say why.
        """
        low, high = _internals.TESTED_TWISTED
        self.assertIsNone(_internals.refusal({}, low))
        self.assertIsNone(_internals.refusal({"STREAMD_FASTWRITE": "1"}, high))
        self.assertEqual(_internals.refusal({"STREAMD_FASTWRITE": "0"}, high), "STREAMD_FASTWRITE=0")
        self.assertEqual(
            _internals.refusal({}, (high[0] + 1, 0)), f"Twisted {high[0] + 1}.0 is outside the tested 23.10-26.10"
        )
        self.assertIsNotNone(_internals.refusal({}, (low[0], low[1] - 1)))

    def test_switches(self) -> None:
        """
        Each switch of L{Shortcuts} turns its own shortcut off.
        """
        self.patch(_internals, "refusal", lambda: None)
        _internals.use(Shortcuts(bigReads=False))
        self.assertEqual(
            [_internals.allowed(name) for name in ("fastWrite", "bigReads", "acceptFirst")], [True, False, True]
        )

    def test_refusedOnceLogged(self) -> None:
        """
        Where the shortcuts are refused, none is taken, and the log says why,
        once.
        """
        self.patch(_internals, "refusal", lambda: "STREAMD_FASTWRITE=0")
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertFalse(_internals.allowed("fastWrite"))
        self.assertFalse(_internals.allowed("acceptFirst"))
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["why"], "STREAMD_FASTWRITE=0")


class FastWriteContractTests(SynchronousTestCase):
    """
    What L{streamd.fanout.socketcursor.SocketCursor} borrows from Twisted's TCP and
    UNIX transports (C{tcp.Connection}).
    """

    def test_socket(self) -> None:
        """
        C{transport.socket} is the connection's own socket: what is sent on
        it reaches the peer.
        """
        transport, far, _ = socketPair(self)
        transport.socket.send(b"straight")
        self.assertEqual(far.recv(100), b"straight")

    def test_startWriting(self) -> None:
        """
        C{startWriting} asks the reactor to say when the socket is writable.
        """
        transport, _, reactor = socketPair(self)
        transport.startWriting()
        self.assertIn(transport, reactor.getWriters())

    def test_writableResumesPullProducer(self) -> None:
        """
        With nothing in its buffer, a transport told to watch for
        writability calls its pull producer's C{resumeProducing} when the
        socket is writable, and stops watching.
        """
        transport, _, reactor = socketPair(self)
        producer = PullRecorder()
        transport.registerProducer(producer, False)
        self.assertEqual(producer.resumed, 1)
        transport.startWriting()
        transport.doWrite()
        self.assertEqual(producer.resumed, 2)
        self.assertNotIn(transport, reactor.getWriters())
        self.assertEqual(transport.dataBuffer, b"")

    def test_bufferSentBeforePullProducer(self) -> None:
        """
        A transport that holds bytes written through it (more than its
        socket takes at once) calls its pull producer's C{resumeProducing}
        only once it has handed the kernel all of them: an HTTP answer goes
        out before a cursor that waits for it.
        """
        transport, far, _ = socketPair(self)
        producer = PullRecorder()
        transport.registerProducer(producer, False)
        answer = bytes(range(256)) * 200
        transport.write(answer)
        received = b""
        writes = 0
        while producer.resumed == 1 and writes < 1000:
            transport.doWrite()
            writes += 1
            try:
                received += far.recv(1 << 20)
            except BlockingIOError:
                pass
        self.assertEqual(producer.resumed, 2)
        self.assertGreater(writes, 1)
        try:
            received += far.recv(1 << 20)
        except BlockingIOError:
            pass
        self.assertEqual(received, answer)


class Chunks(Protocol):
    """
    Records the size of each read.
    """

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def dataReceived(self, data: bytes) -> None:
        self.sizes.append(len(data))


class BigReadsContractTests(SynchronousTestCase):
    """
    What the C{bigReads} shortcut borrows from Twisted's transports.
    """

    def test_bufferSizeIsTheReadSize(self) -> None:
        """
        A transport reads up to its C{bufferSize} bytes at once: 64 KiB by
        default, more once it is set higher.
        """
        transport, far, _ = socketPair(self)
        far.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        transport.protocol = protocol = Chunks()
        default = abstract.FileDescriptor.bufferSize
        self.assertEqual((transport.bufferSize, default), (default, 65536))
        payload = b"x" * (default + 100_000)
        self.assertEqual(far.send(payload), len(payload))
        transport.doRead()
        transport.bufferSize = READ_SIZE
        transport.doRead()
        self.assertEqual(protocol.sizes, [default, 100_000])


class ContractFailsTests(SynchronousTestCase):
    """
    A contract test fails on a Twisted whose internal changed meaning.
    """

    def test_bufferSizeIgnored(self) -> None:
        """
        On a Twisted whose transports read 64 KiB whatever their
        C{bufferSize} says (played by patching C{tcp.Connection.doRead}),
        the C{bufferSize} contract fails.
        """
        original = tcp.Connection.doRead

        def doRead(self: tcp.Connection) -> object:
            self.bufferSize = 65536
            return original(self)

        self.patch(tcp.Connection, "doRead", doRead)
        contract = BigReadsContractTests("test_bufferSizeIsTheReadSize")
        self.patch(contract, "addCleanup", self.addCleanup)
        self.assertRaises(self.failureException, contract.test_bufferSizeIsTheReadSize)
