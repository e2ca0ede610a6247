"""
Tests for L{streamd.accept}: when its port is used, and the parts of
Twisted's C{tcp} module it relies on.
"""

from __future__ import annotations

import inspect
import os

from twisted.internet import reactor, tcp
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from streamd.accept import acceptFirst


class ChoiceTests(SynchronousTestCase):
    """
    L{acceptFirst} changes only a real reactor, and only with the fast paths
    allowed.
    """

    def test_realReactor(self) -> None:
        """
        The real reactor is wrapped (its C{listenTCP} makes an
        L{AcceptFirstPort}: see the integration tests); its other attributes
        are the reactor's own.
        """
        chosen = acceptFirst(reactor)
        self.assertIsNot(chosen, reactor)
        self.assertEqual(chosen.callLater, reactor.callLater)

    def test_fakeReactors(self) -> None:
        """
        Test reactors are left as they are.
        """
        for fake in (MemoryReactor(), Clock()):
            self.assertIs(acceptFirst(fake), fake)

    def test_switchedOff(self) -> None:
        """
        C{STREAMD_FASTWRITE=0} leaves Twisted's own port in use.
        """
        self.patch(os, "environ", {"STREAMD_FASTWRITE": "0"})
        self.assertIs(acceptFirst(reactor), reactor)


class TwistedContractTests(SynchronousTestCase):
    """
    What L{AcceptFirstPort} uses of Twisted's C{tcp} module, which is not
    public: if one of these fails, a Twisted release changed it, and
    C{TESTED_TWISTED} must not admit that release until the port is
    adapted.
    """

    def test_acceptLoop(self) -> None:
        """
        C{_accept(logger, accepts, listener, reservedFD)} and the log buffer
        and reserved descriptor it is given.
        """
        self.assertEqual(list(inspect.signature(tcp._accept).parameters), ["logger", "accepts", "listener", "reservedFD"])
        self.assertTrue(hasattr(tcp._BuffersLogs, "__enter__"))
        self.assertTrue(hasattr(tcp._reservedFD, "reserve"))

    def test_portSetUp(self) -> None:
        """
        What the port does with each connection: C{_buildAddr}, a session
        number, and its transport class taking (socket, protocol, address,
        port, session number, reactor).
        """
        self.assertTrue(callable(tcp.Port._buildAddr))
        self.assertEqual(tcp.Port.transport, tcp.Server)
        self.assertEqual(
            list(inspect.signature(tcp.Server.__init__).parameters),
            ["self", "sock", "protocol", "client", "server", "sessionno", "reactor"],
        )
        self.assertIn("sessionno", vars(tcp.Port))

