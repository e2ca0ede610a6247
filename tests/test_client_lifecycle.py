"""
Tests for how a L{streamd.client} connection ends: when the reactor stops,
and the timeouts that say why a connection is getting nowhere.  No reactor
runs: time is a L{Clock}, connections are L{StringTransport}s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.client import StreamClientFactory, StreamClientProtocol


class StoppableClock(Clock):
    """
    A L{Clock} with the system event triggers of a reactor, so that a test
    can stop it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.triggers: dict[int, Callable[[], Any]] = {}
        self._next = 0

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[..., Any], *args: Any) -> int:
        assert (phase, event) == ("before", "shutdown"), (phase, event)
        self._next += 1
        self.triggers[self._next] = lambda: f(*args)
        return self._next

    def removeSystemEventTrigger(self, trigger: int) -> None:
        del self.triggers[trigger]

    def stop(self) -> None:
        """
        Run the "before shutdown" triggers, as the reactor does when it stops.
        """
        triggers, self.triggers = self.triggers, {}
        for trigger in triggers.values():
            trigger()


def connected(reactor: Any, **settings: Any) -> tuple[StreamClientProtocol, StringTransport]:
    """
    A client protocol from a factory on C{reactor}, connected to a
    L{StringTransport}.
    """
    factory = StreamClientFactory(lambda message: None, reactor=reactor, **settings)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class ReactorStopTests(SynchronousTestCase):
    """
    Stopping the reactor is a clean end for a client's connection.
    """

    def test_stopClosesCleanly(self) -> None:
        """
        When the reactor stops, the client closes its connection itself, and
        C{finished} fires with C{None} even though the reactor then drops
        the connection as lost (it used to fail, an "Unhandled error in
        Deferred" for a program that was only stopping).
        """
        clock = StoppableClock()
        protocol, transport = connected(clock)
        clock.stop()
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertIsNone(self.successResultOf(protocol.finished))

    def test_lostStillFails(self) -> None:
        """
        A connection lost while the reactor runs still fails C{finished},
        and its shutdown trigger is removed with it.
        """
        clock = StoppableClock()
        protocol, transport = connected(clock)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(protocol.finished, ConnectionLost)
        self.assertEqual(clock.triggers, {})
