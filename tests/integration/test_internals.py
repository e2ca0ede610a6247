"""
Contract tests of the internals the C{acceptFirst} shortcut borrows from
Twisted's C{tcp} module (L{streamd._internals.BORROWED}), on a real
loopback listening socket, and of the one L{streamd._internals} borrows from
nats-py, against a real nats-server.  Each checks what the internal does, so
that it fails on a release where that changed.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from twisted.internet import defer, tcp, threads
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from streamd import _internals
from streamd.listen.accept import AcceptFirstPort

from ..natsupport import startNats


class Recorder(Protocol):
    """
    A protocol that remembers it was connected.
    """

    connected = 0


def listening(case: SynchronousTestCase, kind: type[tcp.Port] = tcp.Port) -> tcp.Port:
    """
    A port of C{kind} listening on a free loopback port, on a memory reactor
    (nothing accepts but the test).
    """
    port = kind(0, Factory.forProtocol(Recorder), 50, "127.0.0.1", MemoryReactorClock())
    port.startListening()
    case.addCleanup(port.socket.close)
    return port


def connectTo(case: SynchronousTestCase, port: tcp.Port, count: int) -> list[socket.socket]:
    """
    C{count} clients connected to C{port}, waiting in its accept queue.
    """
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        case.addCleanup(client.close)
        clients.append(client)
    return clients


def recording(case: SynchronousTestCase, port: tcp.Port) -> list[Recorder]:
    """
    The protocols C{port}'s factory will make, each connection's socket
    closed when C{case} ends.
    """
    protocols: list[Recorder] = []

    def build(address: object) -> Recorder:
        protocol = Recorder()
        protocols.append(protocol)
        case.addCleanup(lambda: protocol.transport.socket.close())
        return protocol

    port.factory.buildProtocol = build  # type: ignore[method-assign]
    return protocols


class AcceptFirstContractTests(SynchronousTestCase):
    """
    What L{AcceptFirstPort} borrows from C{twisted.internet.tcp}.
    """

    def test_accept(self) -> None:
        """
        C{_accept(logger, accepts, listener, reservedFD)} takes one waiting
        connection per item of C{accepts}, as C{(socket, address)}, and
        stops when none waits.
        """
        port = listening(self)
        clients = connectTo(self, port, 3)
        logger = Logger()
        first = list(tcp._accept(logger, range(2), port.socket, tcp._reservedFD))
        rest = list(tcp._accept(logger, range(10), port.socket, tcp._reservedFD))
        for accepted, _ in first + rest:
            self.addCleanup(accepted.close)
        self.assertEqual((len(first), len(rest)), (2, 1))
        self.assertEqual([address for _, address in first + rest], [c.getsockname() for c in clients])

    def test_buffersLogs(self) -> None:
        """
        C{_BuffersLogs(namespace, observer)} gives a logger whose events
        reach C{observer}, in C{namespace}, only once its block ends.
        """
        seen: list[dict[str, Any]] = []
        with tcp._BuffersLogs("streamd.test", seen.append) as logger:
            logger.info("held")
            self.assertEqual(seen, [])
        self.assertEqual([(e["log_format"], e["log_namespace"]) for e in seen], [("held", "streamd.test")])

    def test_reservedFD(self) -> None:
        """
        C{_reservedFD} holds a spare descriptor once a port listens, gives
        it up inside a C{with} block (for C{_accept} to recover from
        EMFILE), and takes it again after.
        """
        listening(self)
        self.assertTrue(tcp._reservedFD.available())
        with tcp._reservedFD:
            self.assertFalse(tcp._reservedFD.available())
        self.assertTrue(tcp._reservedFD.available())

    def test_logger(self) -> None:
        """
        A port's C{_logger} has the C{namespace} and C{observer} that its
        accept loop's buffered log goes to: the global log.
        """
        port = listening(self)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        with tcp._BuffersLogs(port._logger.namespace, port._logger.observer) as logger:
            logger.info("accepting")
        self.assertEqual([e["log_format"] for e in events], ["accepting"])

    def test_realPortNumber(self) -> None:
        """
        A port's C{_realPortNumber} is the port it got.
        """
        port = listening(self)
        self.assertEqual(port._realPortNumber, port.getHost().port)
        self.assertNotEqual(port._realPortNumber, 0)

    def test_buildAddr(self) -> None:
        """
        C{_buildAddr} makes the address object of an accepted peer.
        """
        port = listening(self)
        self.assertEqual(port._buildAddr(("127.0.0.1", 4321)), IPv4Address("TCP", "127.0.0.1", 4321))

    def test_sessionno(self) -> None:
        """
        C{sessionno} counts a port's connections: each transport gets the
        next number.
        """
        port = listening(self)
        connectTo(self, port, 2)
        self.assertEqual(port.sessionno, 0)
        protocols = recording(self, port)
        port.doRead()
        self.assertEqual([protocol.transport.sessionno for protocol in protocols], [0, 1])
        self.assertEqual(port.sessionno, 2)

    def test_transport(self) -> None:
        """
        C{Port.transport(socket, protocol, address, port, sessionno,
        reactor)} makes a TCP transport of an accepted socket, for that peer
        and with that session number.
        """
        port = listening(self)
        client = connectTo(self, port, 1)[0]
        ((accepted, address),) = tcp._accept(Logger(), range(1), port.socket, tcp._reservedFD)
        transport = port.transport(accepted, Protocol(), address, port, 7, port.reactor)
        self.addCleanup(accepted.close)
        self.assertTrue(ITCPTransport.providedBy(transport))
        self.assertEqual(transport.getPeer(), IPv4Address("TCP", *client.getsockname()))
        self.assertEqual(transport.sessionno, 7)

    def test_setUpAsTwistedDoes(self) -> None:
        """
        L{AcceptFirstPort}, which replaces C{Port.doRead}, sets connections
        up as Twisted's port does: the same kind of transport, peers, session
        numbers and connected protocols.
        """
        made = []
        for kind in (tcp.Port, AcceptFirstPort):
            port = listening(self, kind)
            clients = connectTo(self, port, 3)
            protocols = recording(self, port)
            port.doRead()
            port.reactor.advance(0)
            made.append(
                [
                    (type(p.transport), p.transport.getPeer().port, p.transport.sessionno, p.connected)
                    for p in protocols
                ]
            )
            self.assertEqual([peer for _, peer, _, _ in made[-1]], [c.getsockname()[1] for c in clients])
        twisted, ours = made
        self.assertEqual([(k, n, c) for k, _, n, c in twisted], [(k, n, c) for k, _, n, c in ours])
        self.assertEqual([n for _, _, n, _ in ours], [0, 1, 2])


class NatsContractTests(TestCase):
    """
    What L{_internals.stopConsumerTasks} borrows from nats-py.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_stopConsumerTasks(self):  # type: ignore[no-untyped-def]
        """
        An ordered JetStream push subscription with heartbeats has its
        heartbeat and flow-control tasks where the fence looks, and the
        fence stops both.
        """
        import nats
        from nats.js.api import ConsumerConfig

        server = yield startNats(self, -1, "-js", "-sd", self.mktemp())

        async def subscribe() -> list[bool]:
            connection = await nats.connect(f"nats://127.0.0.1:{server.port}")
            try:
                js = connection.jetstream()
                await js.add_stream(name="contract", subjects=["contract"])
                sub = await js.subscribe(
                    "contract", ordered_consumer=True, config=ConsumerConfig(idle_heartbeat=5), cb=_ignore
                )
                tasks = [sub._sub._jsi._hbtask, sub._sub._jsi._fctask]
                stopped = _internals.stopConsumerTasks(sub)
                await asyncio.sleep(0)
                return [stopped, *(task.cancelled() for task in tasks)]
            finally:
                await connection.close()

        outcome = yield threads.deferToThread(asyncio.run, subscribe())
        self.assertEqual(outcome, [True, True, True])


async def _ignore(message: Any) -> None:
    pass
