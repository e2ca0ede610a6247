"""
Tests for C{POST /streams/NAME} (L{streamd.web.publish}) on a site on a
test transport: the body as one message or as int32 frames, the numbers
in the answer, the publish rules of every publisher, and the bounds on a
body (L{streamd.web.channel}).
"""

from __future__ import annotations

import json

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import ServerConfig, StreamsConfig
from streamd.fanout.hub import Hub
from streamd.framing import INT32
from streamd.reasons import Reason
from streamd.session import MESSAGE_TIMEOUT
from streamd.web.context import WebContext
from streamd.web.publish import MAX_BATCH

from .test_web_subjects import _PricesPolicy
from .webtools import SiteConnection, cancelBatchedTimers, tokenConfig, webContext


def post(
    context: WebContext, path: str, body: bytes, headers: str = "", connection: SiteConnection | None = None
) -> SiteConnection:
    """
    A connection that sent C{POST path} with C{body}.
    """
    connection = connection or SiteConnection(context)
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    connection.send(head.encode() + body)
    return connection


def answer(connection: SiteConnection) -> tuple[int, bytes]:
    """
    The status and body of the last answer on C{connection}.
    """
    last = connection.transport.value().rpartition(b"HTTP/1.1 ")[2]
    head, _, body = last.partition(b"\r\n\r\n")
    return int(head[:3]), body


def frames(*payloads: bytes) -> bytes:
    return INT32.encodeMany(list(payloads))


def messages(hub: Hub) -> list[bytes]:
    history = hub.history
    return [bytes(p) for n in range(history.start, history.end) for p in history.payloads(history[n])]


class PublishTests(SynchronousTestCase):
    """
    C{POST /streams/NAME}.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)
        self.context = webContext()

    def stream(self, name: str) -> Hub:
        streams = self.context.streams
        assert streams is not None
        hub = streams.get(name)
        assert hub is not None, name
        return hub

    def test_oneMessage(self) -> None:
        """
        The body is one message, published to the stream (made for it);
        the answer says the number it took.
        """
        self.context.streams.open("prices.eu").publish([b"earlier"])  # type: ignore[union-attr]
        status, body = answer(post(self.context, "/streams/prices.eu", b'{"bund": 101.2}'))
        self.assertEqual((status, json.loads(body)), (200, {"stream": "prices.eu", "first": 2, "last": 2}))
        self.assertEqual(messages(self.stream("prices.eu")), [b"earlier", b'{"bund": 101.2}'])
        status, body = answer(post(self.context, "/streams/new", b""))
        self.assertEqual((status, json.loads(body)), (200, {"stream": "new", "first": 1, "last": 1}))
        self.assertEqual(messages(self.stream("new")), [b""])

    def test_int32(self) -> None:
        """
        With C{Content-Type: application/x-streamd-int32} the body is int32
        frames, one message each, published together as they came.
        """
        body = frames(b"a", b"bb", b"")
        status, answered = answer(
            post(self.context, "/streams/s", body, "Content-Type: application/x-streamd-int32\r\n")
        )
        self.assertEqual((status, json.loads(answered)), (200, {"stream": "s", "first": 1, "last": 3}))
        hub = self.stream("s")
        self.assertEqual(messages(hub), [b"a", b"bb", b""])
        self.assertEqual(hub.history[0][2], body)

    def test_badBodies(self) -> None:
        """
        int32 frames that end inside one, or no frame, are a 400; a message
        over C{--max-message-size} a 413 (C{oversized_frame}); nothing is
        published, and no stream made.
        """
        self.context = webContext(ServerConfig(maxMessageSize=10))
        int32 = "Content-Type: application/x-streamd-int32; charset=binary\r\n"
        for body, headers, status in (
            (frames(b"whole") + b"\0\0\0\5who", int32, 400),
            (b"", int32, 400),
            (frames(b"x" * 11), int32, 413),
            (b"x" * 11, "", 413),
        ):
            self.assertEqual(answer(post(self.context, "/streams/s", body, headers))[0], status, body)
        self.assertIsNone(self.context.streams.get("s"))  # type: ignore[union-attr]
        disconnects = self.context.hub.stats.disconnects
        self.assertEqual((disconnects[Reason.BAD_REQUEST], disconnects[Reason.OVERSIZED_FRAME]), (2, 2))

    def test_badStreams(self) -> None:
        """
        A name that is not one (a pattern too) is a 400; an undeclared
        stream under C{--streams declared} a 404; a new one past
        C{--max-streams} a 503.
        """
        self.assertEqual(answer(post(self.context, "/streams/a%20b", b"x"))[0], 400)
        self.assertEqual(answer(post(self.context, "/streams/a.*", b"x"))[0], 400)
        self.context = webContext(streamsConfig=StreamsConfig(declaredOnly=True))
        status, body = answer(post(self.context, "/streams/nope", b"x"))
        self.assertEqual(status, 404)
        self.assertIn(b"--streams declared", body)
        self.context = webContext(streamsConfig=StreamsConfig(maxStreams=1))
        self.assertEqual(answer(post(self.context, "/streams/more", b"x"))[0], 503)
        self.assertEqual(answer(post(self.context, "/streams/default", b"x"))[0], 200)

    def test_tokens(self) -> None:
        """
        With C{--auth-token-file}, a request without the token, or with a
        wrong one, is a 401 that asks for a bearer token (counted under
        C{auth_failed}); with it, it publishes.  A token in the URL is not
        taken.
        """
        self.context = webContext(tokenConfig(self))
        for headers in ("", "Authorization: Bearer guess\r\n"):
            connection = post(self.context, "/streams/s?token=sesame", b"x", headers)
            self.assertEqual(answer(connection)[0], 401)
            self.assertIn(b"WWW-Authenticate: Bearer", connection.transport.value())
        self.assertEqual(self.context.hub.stats.disconnects[Reason.AUTH_FAILED], 2)
        self.assertEqual(
            answer(post(self.context, "/streams/s", b"x", "Authorization: Bearer sesame\r\n"))[0], 200
        )

    def test_publishRules(self) -> None:
        """
        Under C{--read-only}, or without the C{--publish-token-file} token,
        or to a stream its token may not publish to, a request is a 403
        (C{read_only}) and makes no stream.
        """
        publish = self.tokenFile(b"pub-token")
        for policy, headers in (
            (AccessPolicy(readOnly=True), ""),
            (AccessPolicy(publish=publish), ""),
            (_PricesPolicy(), ""),
        ):
            self.context = webContext(ServerConfig(access=policy))
            status, body = answer(post(self.context, "/streams/logs", b"x", headers))
            self.assertEqual((status, body), (403, b"this client may not publish to 'logs'\n"))
            self.assertIsNone(self.context.streams.get("logs"))  # type: ignore[union-attr]
            self.assertEqual(self.context.hub.stats.disconnects[Reason.READ_ONLY], 1)
        self.context = webContext(ServerConfig(access=AccessPolicy(publish=publish)))
        self.assertEqual(
            answer(post(self.context, "/streams/s", b"x", "Authorization: Bearer pub-token\r\n"))[0], 200
        )

    def tokenFile(self, token: bytes) -> TokenFile:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(token)
        return TokenFile(path)

    def test_origin(self) -> None:
        """
        A page of another origin may not publish (403), one of the daemon's
        own may.
        """
        foreign = post(self.context, "/streams/s", b"x", "Origin: https://evil.example\r\n")
        self.assertEqual(answer(foreign)[0], 403)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.ORIGIN], 1)
        self.assertEqual(
            answer(post(self.context, "/streams/s", b"x", "Origin: http://localhost\r\n"))[0], 200
        )

    def test_keepAlive(self) -> None:
        """
        Requests on one connection are answered one after the other, each
        under its own token: the second, without one, does not publish on
        the first's.
        """
        self.context = webContext(tokenConfig(self))
        connection = post(self.context, "/streams/s", b"one", "Authorization: Bearer sesame\r\n")
        post(self.context, "/streams/s", b"two", connection=connection)
        self.assertEqual(connection.answers(), 2)
        self.assertEqual(answer(connection)[0], 401)
        self.assertEqual(messages(self.stream("s")), [b"one"])

    def test_clusterNumbers(self) -> None:
        """
        Where a cluster's stream numbers the messages (JetStream), they are
        handed to it, and the answer is a 202 that says how many.
        """
        handed: list[list[bytes]] = []
        self.context.hub.upstream = lambda payloads, sender: handed.append(list(payloads))
        status, body = answer(post(self.context, "/streams/default", b"x"))
        self.assertEqual((status, json.loads(body)), (202, {"stream": "default", "accepted": 1}))
        self.assertEqual(handed, [[b"x"]])

    def test_publisherLetGo(self) -> None:
        """
        Once answered, a request is no publisher of its stream any more:
        the stream may expire when idle.
        """
        post(self.context, "/streams/s", b"x")
        hub = self.stream("s")
        self.context.clock.advance(10)
        self.assertTrue(hub.idle(10))

    def test_linesThrottled(self) -> None:
        """
        However many requests publish in a second, the log has a line for
        the first ten messages only, then one line that counts the rest.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        connection = SiteConnection(self.context)
        for n in range(50):
            post(self.context, "/streams/s", b"message %d" % n, connection=connection)
        self.context.clock.advance(1)
        lines = [formatEvent(e) for e in log]
        self.assertEqual(len([line for line in lines if " sent " in line]), 10, lines)
        self.assertIn("40 more messages (400 bytes) published over HTTP in a second", "\n".join(lines))


class BodyBoundTests(SynchronousTestCase):
    """
    How much body a request that publishes may send, and how fast.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_otherEndpoints(self) -> None:
        """
        No other request takes a body: a POST elsewhere, to C{/streams}
        itself, or a PUT is answered 413 before any of it is read.
        """
        context = webContext()
        for line in ("POST /healthz", "POST /streams", "POST /streams/", "PUT /streams/s"):
            connection = SiteConnection(context)
            connection.send(f"{line} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n".encode())
            self.assertEqual(connection.status(), 413, line)
            self.assertIsNone(connection.channel.requests[0].content)

    def test_declaredTooLarge(self) -> None:
        """
        A body whose length is over the bound (1 MiB, or one message of
        C{--max-message-size} if that is more) is answered 413 as soon as
        its head is in, before C{100 Continue}.
        """
        for size, limit in ((1000, MAX_BATCH), (4 << 20, (4 << 20) + 4)):
            context = webContext(ServerConfig(maxMessageSize=size))
            connection = SiteConnection(context)
            head = (
                b"POST /streams/s HTTP/1.1\r\nHost: l\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
            )
            connection.send(head % (limit + 1))
            self.assertEqual(connection.status(), 413)
            self.assertNotIn(b"100 Continue", connection.transport.value())
            connection = SiteConnection(context)
            connection.send(head % limit)
            self.assertIn(b"100 Continue", connection.transport.value())

    def test_chunked(self) -> None:
        """
        A chunked body is taken while it stays within the bound, and cut
        with a 413 as soon as it goes over.
        """
        context = webContext()
        connection = SiteConnection(context)
        chunked = b"POST /streams/s HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n"
        connection.send(chunked + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        self.assertEqual(json.loads(answer(connection)[1]), {"stream": "s", "first": 1, "last": 1})
        connection = SiteConnection(context)
        connection.send(chunked)
        chunk = b"%x\r\n%s\r\n" % (64 << 10, b"x" * (64 << 10))
        for _ in range(MAX_BATCH // (64 << 10) + 1):
            connection.send(chunk)
        self.assertEqual(connection.status(), 413)
        self.assertTrue(connection.closed)
        self.assertEqual(context.connections.partial.held, 0)

    def test_partialBudget(self) -> None:
        """
        Bodies being received count in C{--max-partial-bytes} with every
        client's unfinished messages; one that would take them over is
        refused (503, C{max_partial}); the budget is given back once a
        request is answered or its connection is lost.
        """
        context = webContext(ServerConfig(maxMessageSize=400, maxPartialBytes=1000))
        body = frames(b"x" * 396, b"y" * 396)
        head = b"POST /streams/s HTTP/1.1\r\nHost: l\r\nContent-Length: 800\r\n\r\n"
        first = SiteConnection(context)
        first.send(head.replace(b"\r\n\r\n", b"\r\nContent-Type: application/x-streamd-int32\r\n\r\n"))
        first.send(body[:700])
        self.assertEqual(context.connections.partial.held, 700)
        second = SiteConnection(context)
        second.send(head + b"x" * 400)
        self.assertEqual(second.status(), 503)
        self.assertEqual(context.hub.stats.disconnects[Reason.MAX_PARTIAL], 1)
        first.send(body[700:])
        self.assertEqual(json.loads(answer(first)[1]), {"stream": "s", "first": 1, "last": 2})
        self.assertEqual(context.connections.partial.held, 0)
        third = SiteConnection(context)
        third.send(head + b"x" * 500)
        third.channel.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(context.connections.partial.held, 0)

    def test_slowBody(self) -> None:
        """
        A body must be whole within 60 s of its head (or C{--idle-timeout},
        if shorter), however steadily it comes: else 408
        (C{slow_message}).
        """
        context = webContext()
        connection = SiteConnection(context)
        connection.send(b"POST /streams/s HTTP/1.1\r\nHost: l\r\nContent-Length: 100\r\n\r\n")
        for _ in range(int(MESSAGE_TIMEOUT) - 1):
            connection.send(b"x")
            context.clock.advance(1)
        self.assertFalse(connection.closed)
        context.clock.advance(1)
        self.assertEqual(connection.status(), 408)
        self.assertEqual(context.hub.stats.disconnects[Reason.SLOW_MESSAGE], 1)
        self.assertEqual(context.connections.partial.held, 0)
