"""
Tests for how a L{streamd.client} connection ends: when the reactor stops,
and the timeouts that say why a connection is getting nowhere.  No reactor
runs: time is a L{Clock}, connections are L{StringTransport}s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from streamd.client import (
    ConnectTimeout,
    HandshakeTimeout,
    NoDataTimeout,
    StreamClientFactory,
    StreamClientProtocol,
    connect,
)
from streamd.client.__main__ import ClientOptions

from .support import onStringTransport


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


def connected(
    reactor: Any, tls: bool = False, **settings: Any
) -> tuple[StreamClientProtocol, StringTransport]:
    """
    A client protocol from a factory on C{reactor}, connected to a
    L{StringTransport} (that says it is a TLS one, with C{tls}).
    """
    factory = StreamClientFactory(lambda message: None, reactor=reactor, **settings)
    return onStringTransport(factory.buildProtocol(None), tls)


def dropped(protocol: StreamClientProtocol, transport: StringTransport) -> None:
    """
    Finish what C{abortConnection} on C{transport} started.
    """
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionAborted()))


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


class TimeoutTests(SynchronousTestCase):
    """
    With a timeout, a connection that gets nowhere ends with a reason that
    says how: no TLS handshake, no data at all, no connection.
    """

    def test_noData(self) -> None:
        """
        Without TLS, a connection on which not one byte arrives within the
        timeout is dropped, and C{finished} fails with L{NoDataTimeout}
        (as when a plain client talks to a TLS port, which waits for a
        handshake, forever).
        """
        clock = StoppableClock()
        protocol, transport = connected(clock, timeout=10)
        clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        dropped(protocol, transport)
        reason = self.failureResultOf(protocol.finished, NoDataTimeout)
        self.assertEqual((reason.value.seconds, str(reason.value)), (10, "no data within 10 s"))

    def test_someData(self) -> None:
        """
        Any byte (here the first of a frame) before the timeout ends the
        wait: the connection may then be quiet for as long as it likes.
        """
        clock = StoppableClock()
        protocol, transport = connected(clock, timeout=10)
        clock.advance(9)
        protocol.dataReceived(b"\x00")
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(100)
        self.assertFalse(transport.disconnecting)

    def test_onlySending(self) -> None:
        """
        A client that expects no data (it only sends) is not timed, nor is
        one without a timeout.
        """
        clock = StoppableClock()
        connected(clock, timeout=10, expectData=False)
        connected(clock, timeout=None)
        connected(clock, timeout=0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noHandshake(self) -> None:
        """
        Over TLS, a handshake that has not completed within the timeout
        drops the connection, and C{finished} fails with
        L{HandshakeTimeout} (as when a TLS client talks to a plain port that
        stays quiet), even for a client that only sends.
        """
        clock = StoppableClock()
        protocol, transport = connected(clock, tls=True, timeout=2.5, expectData=False)
        clock.advance(2.5)
        dropped(protocol, transport)
        reason = self.failureResultOf(protocol.finished, HandshakeTimeout)
        self.assertEqual(str(reason.value), "no completed TLS handshake within 2.5 s")
        self.assertFalse(protocol.handshakeDone)

    def test_handshakeDone(self) -> None:
        """
        Over TLS, a completed handshake is enough: the stream may then be
        quiet.
        """
        clock = StoppableClock()
        protocol, transport = connected(clock, tls=True, timeout=10)
        self.assertTrue(protocol.tls)
        clock.advance(5)
        protocol.handshakeCompleted()
        clock.advance(100)
        self.assertFalse(transport.disconnecting)
        self.assertTrue(protocol.handshakeDone)

    def test_lostFirst(self) -> None:
        """
        A connection that ends before its timeout cancels it, and ends for
        its own reason.
        """
        clock = StoppableClock()
        protocol, transport = connected(clock, timeout=10)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsNone(self.successResultOf(protocol.finished))

    def test_noConnection(self) -> None:
        """
        C{connect} with a timeout gives up connecting after that long,
        cancelling the attempt, and fails with L{ConnectTimeout}.
        """
        clock = StoppableClock()
        cancelled: list[object] = []

        class Endpoint:
            def connect(self, factory: object) -> Deferred[object]:
                return Deferred(cancelled.append)

        connecting = connect(clock, Endpoint(), lambda message: None, timeout=10)  # type: ignore[arg-type]
        clock.advance(10)
        reason = self.failureResultOf(connecting, ConnectTimeout)
        self.assertEqual((str(reason.value), len(cancelled)), ("no connection within 10 s", 1))


class TimeoutOptionTests(SynchronousTestCase):
    """
    The command-line client's --timeout.
    """

    def test_values(self) -> None:
        """
        --timeout is 10 seconds unless given; 0 (wait forever) and fractions
        are taken, anything that is not a finite number of seconds is not.
        """
        options = ClientOptions()
        options.parseOptions([])
        self.assertEqual(options["timeout"], 10)
        for text, seconds in [("0", 0), ("0.5", 0.5), ("30", 30)]:
            options = ClientOptions()
            options.parseOptions(["--timeout", text])
            self.assertEqual(options["timeout"], seconds)
        for text in ["-1", "x", "inf", "nan", ""]:
            self.assertRaises(UsageError, ClientOptions().parseOptions, ["--timeout", text])

    def test_where(self) -> None:
        """
        Messages name the server as the user did.
        """
        for argv, where in [
            ([], "127.0.0.1:7000"),
            (["--host", "::1", "--port", "7443"], "[::1]:7443"),
            (["--connect", "unix:path=/run/s"], "unix:path=/run/s"),
        ]:
            options = ClientOptions()
            options.parseOptions(argv)
            self.assertEqual(options.where(), where)
