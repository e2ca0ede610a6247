"""
Tests for L{streamd.web.sse}: what a client of C{/events} sends that does
not parse is a 4xx saying why, and no request, however it fails, leaves a
session holding a client's place without its connection.

The behaviour every transport shares is in C{tests/test_session.py}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import ServerConfig
from streamd.reasons import Reason
from streamd.web import sse
from streamd.web.context import WebContext

from .webtools import EPOCH, SiteConnection, tokenConfig, webContext


class _Failure(Exception):
    """
    What a test makes fail where nothing should.
    """


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise _Failure()


class RequestTests(SynchronousTestCase):
    """
    Requests of C{/events} that do not parse, or fail.
    """

    def setUp(self) -> None:
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def get(self, context: WebContext, target: bytes, headers: bytes = b"") -> SiteConnection:
        connection = SiteConnection(context)
        connection.send(b"GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % (target, headers))
        return connection

    def assertRefused(self, context: WebContext, connection: SiteConnection, status: int, reason: Reason) -> None:
        """
        C{connection}'s request was answered C{status} with one line saying
        why, counted under C{reason}, logged in one line without a
        traceback, and holds no client's place: the session is gone.
        """
        self.assertEqual(connection.status(), status)
        self.assertEqual(context.hub.stats.disconnects[reason], 1)
        self.assertEqual(list(context.connections), [])
        self.assertEqual(context.hub.stats.connections, len(context.connections))
        warnings = [formatEvent(event) for event in self.log if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len([line for line in warnings if line.startswith(connection.peer + " ")]), 1, warnings)
        self.assertFalse([event for event in self.log if "log_failure" in event])

    def test_numbersOfAsciiDigits(self) -> None:
        """
        A C{last=} that C{int} refuses or that no sequence number has
        (digits that are not ASCII, more than 20) is a 400 saying so.
        """
        for last in (b"%C2%B2", b"9" * 21, b"9" * 5000):
            context = webContext()
            connection = self.get(context, b"/events?last=%s&epoch=%s" % (last, EPOCH.encode()))
            self.assertRefused(context, connection, 400, Reason.BAD_REQUEST)
            self.assertIn(b"which is not a number of at most 20 digits", connection.body())
            self.assertLess(len(connection.body()), 200)

    def test_lastEventIdNotUtf8(self) -> None:
        """
        A C{Last-Event-ID} that is not UTF-8, or whose number is not ASCII
        digits, is a 400, at C{/events} and at C{/events/SUBJECTS}.
        """
        for target in (b"/events", b"/events/default"):
            for eventId in (b"\xff", EPOCH.encode() + b"-\xc2\xb2", b"default/" + EPOCH.encode() + b"-\xc2\xb2"):
                context = webContext()
                connection = self.get(context, target, b"Last-Event-ID: %s\r\n" % eventId)
                self.assertRefused(context, connection, 400, Reason.BAD_REQUEST)

    def test_originOrHostNotUtf8(self) -> None:
        """
        An C{Origin} or a C{Host} that is not UTF-8 is a 400.
        """
        for headers in (b"Origin: http://\xff\r\n", b"Host: \xff\r\n"):
            context = webContext()
            connection = SiteConnection(context)
            connection.send(b"GET /events HTTP/1.1\r\n%s\r\n" % headers)
            self.assertRefused(context, connection, 400, Reason.BAD_REQUEST)
            self.assertIn(b"header that is not UTF-8", connection.body())

    def test_tokenNotUtf8(self) -> None:
        """
        A token that is not UTF-8 is a token like any other: a wrong one.
        """
        context = webContext(tokenConfig(self))
        connection = self.get(context, b"/events", b"Authorization: Bearer \xff\r\n")
        self.assertRefused(context, connection, 401, Reason.AUTH_FAILED)

    def test_slotsNotHeld(self) -> None:
        """
        Requests that fail to parse take no client's place once their
        connections close: with C{--max-clients 3}, a client after three of
        them gets its stream.
        """
        context = webContext(ServerConfig(maxClients=3, heartbeat=None))
        for _ in range(3):
            refused = self.get(context, b"/events?last=%s&epoch=%s" % (b"9" * 5000, EPOCH.encode()))
            refused.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.get(context, b"/events").status(), 200)

    def test_head(self) -> None:
        """
        C{HEAD /events} is answered the head of a stream, and no body: no
        session, no stream.
        """
        context = webContext()
        connection = SiteConnection(context)
        connection.send(b"HEAD /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        context.hub.publish([b"not for a HEAD"])
        self.assertEqual(connection.status(), 200)
        self.assertIn(b"Content-Type: text/event-stream", connection.transport.value())
        self.assertEqual(connection.body(), b"")
        self.assertEqual(list(context.connections), [])

    def test_failureBeforeTheStream(self) -> None:
        """
        Whatever fails unexpectedly once a request's session is admitted,
        before its stream starts, ends that session: the request is
        answered 500, and its place is free.
        """
        self.patch(sse, "_startAsked", _fail)
        context = webContext(ServerConfig(maxClients=1, heartbeat=None))
        connection = self.get(context, b"/events")
        self.assertEqual(connection.status(), 500)
        self.assertEqual(len(self.flushLoggedErrors(_Failure)), 1)
        self.assertEqual(list(context.connections), [])

    def test_failureAsTheStreamStarts(self) -> None:
        """
        Whatever fails unexpectedly once the stream has its connection ends
        its session and closes the connection.
        """
        self.patch(sse, "cursorFor", _fail)
        context = webContext(ServerConfig(maxClients=1, heartbeat=None))
        connection = self.get(context, b"/events")
        self.assertEqual(len(self.flushLoggedErrors(_Failure)), 1)
        self.assertTrue(connection.transport.aborted)
        self.assertEqual(list(context.connections), [])
