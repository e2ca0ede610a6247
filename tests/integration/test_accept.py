"""
L{streamd.listen.accept.AcceptFirstPort} on real loopback sockets.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from streamd.listen.accept import SETUP_BATCH, AcceptFirstPort, acceptFirst
from tests.support import waitFor


class _Counted(Protocol):
    def connectionMade(self) -> None:
        self.factory.made.append(self)  # type: ignore[attr-defined]


class AcceptFirstTests(TestCase):
    """
    Every waiting connection is taken off the kernel's queue at once, then set
    up a batch per turn of the reactor.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        self.factory = Factory.forProtocol(_Counted)
        self.factory.made = []  # type: ignore[attr-defined]
        endpoint = serverFromString(acceptFirst(reactor), "tcp:0:interface=127.0.0.1:backlog=1024")
        self.port = yield endpoint.listen(self.factory)
        self.addCleanup(self.port.stopListening)
        self.clients: list[socket.socket] = []
        self.addCleanup(lambda: [client.close() for client in self.clients])

    def connect(self, count: int) -> None:
        """
        Open C{count} connections; the kernel completes their handshakes
        without the reactor turning.
        """
        address = ("127.0.0.1", self.port.getHost().port)
        self.clients += [socket.create_connection(address, timeout=10) for _ in range(count)]

    @inlineCallbacks
    def test_storm(self) -> Any:
        """
        One wake-up accepts all the waiting connections and sets up
        L{SETUP_BATCH} of them; the next turns set up the rest.
        """
        self.assertIsInstance(self.port, AcceptFirstPort)
        self.connect(300)
        self.port.doRead()
        self.assertEqual((len(self.factory.made), len(self.port._waiting)), (SETUP_BATCH, 300 - SETUP_BATCH))
        yield waitFor(lambda: len(self.factory.made) == 300)
        peers = {protocol.transport.getPeer().port for protocol in self.factory.made}
        self.assertEqual(peers, {client.getsockname()[1] for client in self.clients})

    @inlineCallbacks
    def test_stopClosesWaiting(self) -> Any:
        """
        Connections accepted but not yet set up when the port stops are
        closed: their clients read the end of the stream.
        """
        self.connect(SETUP_BATCH + 5)
        self.port.doRead()
        yield self.port.stopListening()
        waiting = self.clients[-5:]
        self.assertEqual([client.recv(1) for client in waiting], [b""] * 5)
        self.assertEqual(len(self.factory.made), SETUP_BATCH)
