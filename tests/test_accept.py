"""
Tests for L{streamd.listen.accept}: when its port is used (the parts of Twisted's
C{tcp} module it relies on are checked by
L{tests.integration.test_internals}).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from streamd import _internals
from streamd.config import Shortcuts
from streamd.listen.accept import acceptFirst


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
        With the C{acceptFirst} shortcut off, Twisted's own port is used.
        """
        self.patch(_internals, "_inForce", Shortcuts(acceptFirst=False))
        self.assertIs(acceptFirst(reactor), reactor)
