"""
Tests for L{streamd.web.channel}: an HTTP connection of C{--http} counted
in C{--max-clients} (once, when its request becomes a session), given
C{--http-header-timeout} for each request head, refused a body its
endpoint does not take before it is read, cut when it sends requests without reading the answers; and the
access log throttled.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import ServerConfig
from streamd.reasons import Reason
from streamd.session import CONNECTION_LINES
from streamd.web.channel import ACCESS_LINES, MAX_UNREAD_ANSWERS
from streamd.web.site import makeSite

from .webtools import HANDSHAKE, SiteConnection, cancelBatchedTimers, tokenConfig, webContext

GET = b"GET /nothing-here HTTP/1.1\r\nHost: localhost\r\n\r\n"


class _Logged:
    def setUp(self) -> None:
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.addCleanup(cancelBatchedTimers)  # type: ignore[attr-defined]

    def warnings(self) -> list[str]:
        return [formatEvent(event) for event in self.log if event["log_level"] >= LogLevel.warn]


class HeaderTimeoutTests(_Logged, SynchronousTestCase):
    """
    C{--http-header-timeout}: a request head must be whole in time.
    """

    def test_slowloris(self) -> None:
        """
        A request head sent a byte a second, so that it never idles, is
        answered 408 and closed when the head timeout ends, counted under
        C{header_timeout} and logged once.
        """
        context = webContext()
        connection = SiteConnection(context)
        head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100
        for byte in head[:4]:
            connection.send(bytes((byte,)))
            context.clock.advance(1)
            self.assertFalse(connection.closed)
        connection.send(b"a")
        context.clock.advance(1)
        self.assertEqual(connection.status(), 408)
        self.assertTrue(connection.closed)
        self.assertEqual(context.hub.stats.disconnects[Reason.HEADER_TIMEOUT], 1)
        self.assertEqual(len([line for line in self.warnings() if line.startswith(connection.peer)]), 1)

    def test_abortedIfUnread(self) -> None:
        """
        A connection that does not take the 408 is aborted a few seconds
        later: it holds no descriptor beyond that.
        """
        context = webContext()
        connection = SiteConnection(context)
        connection.send(b"GET / HTTP/1.1\r\n")
        context.clock.advance(context.headerTimeout)  # type: ignore[arg-type]
        self.assertFalse(connection.transport.aborted)
        context.clock.advance(5)
        self.assertTrue(connection.transport.aborted)

    def test_idleClosedQuietly(self) -> None:
        """
        A connection that sent nothing, or nothing since its last answer (a
        keep-alive connection), is closed when the timeout ends, neither
        counted nor logged.
        """
        context = webContext()
        fresh, kept = SiteConnection(context), SiteConnection(context)
        context.clock.advance(1)
        kept.send(GET)
        self.assertEqual(kept.status(), 404)
        context.clock.advance(context.headerTimeout - 1)  # type: ignore[operator]
        self.assertTrue(fresh.closed)
        self.assertFalse(kept.closed)
        context.clock.advance(1)
        self.assertTrue(kept.closed)
        self.assertEqual(sum(context.hub.stats.disconnects.values()), 0)
        self.assertEqual(self.warnings(), [])

    def test_streamsNotTimed(self) -> None:
        """
        Once a request is a stream, the head timeout no longer applies.
        """
        context = webContext(ServerConfig(heartbeat=None))
        connection = SiteConnection(context)
        connection.send(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        context.clock.advance(60)
        self.assertFalse(connection.closed)


class CountTests(_Logged, SynchronousTestCase):
    """
    HTTP connections count in C{--max-clients}, once each.
    """

    def test_counted(self) -> None:
        """
        An HTTP connection that is not a session counts among the daemon's
        connections, in C{/metrics}' figures too, until it is gone.
        """
        context = webContext()
        connection = SiteConnection(context)
        self.assertEqual((len(context.connections), context.hub.stats.connections), (1, 1))
        self.assertEqual(context.connections.channels, [connection.channel])
        connection.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((len(context.connections), context.hub.stats.connections), (0, 0))

    def test_maxClients(self) -> None:
        """
        Over C{--max-clients}, counting half-sent requests, a connection is
        answered 503 at once and closed; each refusal is counted, and the
        log has a line for each of the first few in a second only.
        """
        context = webContext(ServerConfig(maxClients=2))
        SiteConnection(context).send(b"GET / HT")
        SiteConnection(context)
        refused = [SiteConnection(context) for _ in range(3 * CONNECTION_LINES)]
        self.assertEqual({connection.status() for connection in refused}, {503})
        self.assertTrue(all(connection.closed for connection in refused))
        self.assertEqual(len(context.connections), 2)
        self.assertEqual(context.hub.stats.disconnects[Reason.MAX_CLIENTS], 3 * CONNECTION_LINES)
        self.assertEqual(len(self.warnings()), CONNECTION_LINES)

    def test_sessionCountsOnce(self) -> None:
        """
        A request that becomes a session (WebSocket, SSE) counts as that
        session, not twice; an SSE request refused leaves its connection
        counted as itself again.
        """
        context = webContext(tokenConfig(self))
        ws = SiteConnection(context)
        ws.send(HANDSHAKE % (b"", b"Authorization: Bearer sesame\r\n"))
        sse = SiteConnection(context)
        sse.send(b"GET /events?token=sesame HTTP/1.1\r\nHost: localhost\r\n\r\n")
        refused = SiteConnection(context)
        refused.send(b"GET /events?token=guess HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(refused.status(), 401)
        self.assertEqual(len(context.connections), 3)
        self.assertEqual(len(list(context.connections)), 2)
        self.assertEqual(context.connections.channels, [refused.channel])

    def test_lastSlotForAStream(self) -> None:
        """
        A connection counted as itself can still become a stream at the
        limit: its request takes its own place.
        """
        context = webContext(ServerConfig(maxClients=1, heartbeat=None))
        connection = SiteConnection(context)
        connection.send(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(connection.status(), 200)
        self.assertEqual(len(context.connections), 1)


class UpgradeTests(_Logged, SynchronousTestCase):
    """
    A request that hands its connection to another protocol.
    """

    def test_framesWithHandshake(self) -> None:
        """
        A WebSocket message that comes in the same read as the handshake
        is published, not kept by twisted.web for a next request.
        """
        context = webContext()
        connection = SiteConnection(context)
        eager = bytes((0x81, 0x85)) + b"\0\0\0\0" + b"eager"
        connection.send(HANDSHAKE % (b"", b"") + eager)
        self.assertEqual(connection.status(), 101)
        self.assertEqual(context.hub.history.nextSequence, 2)


class BodyTests(_Logged, SynchronousTestCase):
    """
    No endpoint but C{POST /streams/NAME} (L{tests.test_web_publish})
    takes a request body.
    """

    def test_refusedBeforeRead(self) -> None:
        """
        A request with a body, sized or chunked, is answered 413 as soon as
        its head is in, before any token is checked, and nothing of the
        body is read or kept; counted under C{request_body}.
        """
        context = webContext(tokenConfig(self))
        for head in (b"Content-Length: 1000000", b"Transfer-Encoding: chunked"):
            connection = SiteConnection(context)
            connection.send(
                b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n%s\r\n\r\n" % head
            )
            self.assertEqual(connection.status(), 413)
            self.assertNotIn(b"100 Continue", connection.transport.value())
            connection.send(b"x" * 100_000)
            self.assertEqual(connection.answers(), 1)
            self.assertTrue(connection.closed)
            self.assertIsNone(connection.channel.requests[0].content)
        self.assertEqual(context.hub.stats.disconnects[Reason.REQUEST_BODY], 2)
        self.assertEqual(context.hub.stats.disconnects[Reason.AUTH_FAILED], 0)

    def test_emptyBody(self) -> None:
        """
        C{Content-Length: 0} is no body.
        """
        context = webContext()
        connection = SiteConnection(context)
        connection.send(b"GET /nothing-here HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(connection.status(), 404)


class PipelineTests(_Logged, SynchronousTestCase):
    """
    A client that sends requests without reading the answers.
    """

    def test_cut(self) -> None:
        """
        While the connection's buffer is full (the transport paused the
        channel), the connection may send L{MAX_UNREAD_ANSWERS} requests
        more; the next one cuts it, counted under C{pipeline}.
        """
        context = webContext()
        connection = SiteConnection(context)
        connection.send(GET)
        connection.channel.pauseProducing()
        connection.send(GET * 100)
        self.assertEqual(connection.answers(), 1 + MAX_UNREAD_ANSWERS)
        self.assertTrue(connection.transport.aborted)
        self.assertEqual(context.hub.stats.disconnects[Reason.PIPELINE], 1)

    def test_readerKept(self) -> None:
        """
        A client that reads what it is sent may send as many requests at
        once as it likes.
        """
        context = webContext()
        connection = SiteConnection(context)
        connection.channel.pauseProducing()
        connection.send(GET * 5)
        connection.channel.resumeProducing()
        connection.send(GET * 100)
        self.assertEqual(connection.answers(), 105)
        self.assertFalse(connection.closed)


class StaticTests(_Logged, SynchronousTestCase):
    """
    The page's files.
    """

    def test_pathNotAFile(self) -> None:
        """
        A path that is not UTF-8, or holds a NUL, is a 404, and nothing is
        logged but the request.
        """
        for path in (b"/%ff%00", b"/%00", b"/static/%ff"):
            connection = SiteConnection(webContext())
            connection.send(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path)
            self.assertEqual(connection.status(), 404, path)
        self.assertEqual(self.warnings(), [])


class AccessLogTests(_Logged, SynchronousTestCase):
    """
    The access log cannot be flooded.
    """

    def test_throttled(self) -> None:
        """
        Past L{ACCESS_LINES} requests in a second, requests are counted, and
        the count logged once when the second ends.
        """
        context = webContext()
        site = makeSite(context)
        site.startFactory()
        self.addCleanup(site.stopFactory)
        connection = SiteConnection(context, site)
        connection.send(GET * (ACCESS_LINES + 30))
        lines = [formatEvent(event) for event in self.log]
        self.assertEqual(len([line for line in lines if "GET /nothing-here" in line]), ACCESS_LINES)
        context.clock.advance(1)
        lines = [formatEvent(event) for event in self.log]
        self.assertIn("30 more requests in a second, not logged one by one", lines)

    def test_noTokenLogged(self) -> None:
        """
        A token the daemon takes from the URL, however its parameter's name
        is spelt (percent-encoded, in capitals, after C{;}, after a C{#},
        which twisted.web takes as a byte), is not in the access log, nor
        one in the referrer; other parameters are.
        """
        context = webContext(tokenConfig(self))
        site = makeSite(context)
        site.startFactory()
        self.addCleanup(site.stopFactory)
        connection = SiteConnection(context, site)
        queries = (b"%74oken=sesame&last=zz", b"TOKEN=sesame", b"last=zz;To%6Ben=sesame", b"+token=sesame", b"a=#&token=sesame&last=zz")
        for query in queries:
            connection.send(
                b"GET /events?%s HTTP/1.1\r\nHost: localhost\r\nReferer: http://localhost/?%s#x\r\n\r\n"
                % (query, query)
            )
        self.assertEqual(connection.answers(), len(queries))
        lines = [formatEvent(event) for event in self.log if "GET /events" in formatEvent(event)]
        self.assertEqual(len(lines), len(queries))
        self.assertNotIn("sesame", " ".join(lines))
        self.assertIn('"GET /events?%74oken=***&last=zz HTTP/1.1" 400', lines[0])
        self.assertIn('"http://localhost/?last=zz;To%6Ben=***"', lines[2])

