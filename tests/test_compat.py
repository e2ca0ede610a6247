"""
Tests for L{streamd._compat}: the factories' typed base is Twisted's plain
C{Factory} at run time, on every Twisted that setup.cfg declares.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from streamd._compat import FactoryOf
from streamd.client import StreamClientFactory
from streamd.server import StreamServerFactory


class FactoryOfTests(SynchronousTestCase):
    """
    L{FactoryOf} subscripts without Twisted's help.
    """

    def test_isFactory(self) -> None:
        """
        C{FactoryOf[P]} is C{Factory} itself, whatever P is, so a subclass
        has the same bases on a Twisted whose C{Factory} is not generic.
        """
        self.assertIs(FactoryOf[Protocol], Factory)

    def test_streamdFactories(self) -> None:
        """
        The server's and the client's factories are C{Factory} subclasses
        whose next base is C{Factory}.
        """
        for factory in (StreamServerFactory, StreamClientFactory):
            self.assertIs(factory.__mro__[1], Factory)
