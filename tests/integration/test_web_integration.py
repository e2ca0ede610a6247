"""
Integration tests of C{--http} on real loopback sockets: a WebSocket round
trip with autobahn's Twisted client, Server-Sent Events resumed with
C{Last-Event-ID}, metrics parsed with C{prometheus_client}'s parser,
C{/connz}, C{/healthz}, and the token's refusals.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateResponseAccept
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from streamd.config import DEFAULT_HEADER_TIMEOUT, DaemonConfig, FlowControl, Listen, ServerConfig
from streamd.fanout.mux import SocketMux
from streamd.fanout.socketcursor import SocketCursor
from streamd.reasons import Reason
from streamd.service import StreamdService
from streamd.session import MAX_UNANSWERED_PINGS
from tests.support import startDaemon, waitFor
from tests.webtools import cancelBatchedTimers, controls, events, serverFrames, tokenConfig

LOCAL = "tcp:0:interface=127.0.0.1"


class _WebSocketClient(WebSocketClientProtocol):  # type: ignore[misc]
    """
    Keeps every message it gets, and fires C{factory.closed} at the end.
    """

    def onOpen(self) -> None:
        self.factory.client = self
        self.factory.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.received.append((isBinary, payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(Exception(f"refused: {code} {reason}"))
        self.factory.closed.callback(code)


@inlineCallbacks
def openWebSocket(
    case: Any, port: int, query: str = "", headers: dict[str, str] | None = None, deflate: bool = False
) -> Any:
    """
    The factory of a WebSocket client of C{/ws} on loopback C{port}, once
    it is open; closed when C{case} ends.  With C{deflate}, it offers
    permessage-deflate as autobahn does by default, and accepts what the
    server answers.
    """
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws{query}", headers=headers or {})
    factory.protocol = _WebSocketClient
    if deflate:
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=PerMessageDeflateResponseAccept,
        )
    factory.opened, factory.closed, factory.received = Deferred(), Deferred(), []
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocol = yield endpoint.connect(factory)
    case.addCleanup(lambda: factory.closed)
    case.addCleanup(protocol.transport.loseConnection)
    yield factory.opened
    return factory


class _EventsClient(Protocol):
    """
    A raw HTTP/1.0 client of C{/events} (no chunked encoding to undo).
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(None)

    def events(self) -> list[dict[str, str]]:
        return events(self.data.partition(b"\r\n\r\n")[2].decode())


class _Mixin:
    """
    A daemon with one TCP listener and one C{--http} listener.
    """

    config = ServerConfig()
    flow = FlowControl()
    publicMetrics = False
    headerTimeout: float | None = DEFAULT_HEADER_TIMEOUT
    compress: int | None = None

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)  # type: ignore[attr-defined]
        config = DaemonConfig(
            listens=(Listen(LOCAL),),
            sources=(),
            server=self.config,
            http=(LOCAL,),
            httpPublicMetrics=self.publicMetrics,
            httpHeaderTimeout=self.headerTimeout,
            httpCompress=self.compress,
            flow=self.flow,
        )
        self.service: StreamdService
        self.service, _ = startDaemon(self, config)
        port = self.service.listeners[-1].port
        assert port is not None
        self.port = port.getHost().port
        self.hub = self.service.hub

    @inlineCallbacks
    def get(self, path: str, headers: dict[bytes, list[bytes]] | None = None) -> Any:
        """
        GET C{path}: the response's code and body.
        """
        agent = Agent(reactor)
        response = yield agent.request(
            b"GET", f"http://127.0.0.1:{self.port}{path}".encode(), Headers(headers or {})
        )
        body = yield readBody(response)
        return response.code, body

    def webSocket(self, query: str = "", headers: dict[str, str] | None = None, deflate: bool = False) -> Any:
        """
        An open WebSocket client of C{/ws}.
        """
        return openWebSocket(self, self.port, query, headers, deflate)

    @inlineCallbacks
    def eventStream(self, request: bytes) -> Any:
        """
        A raw client of C{/events} that sent C{request}.
        """
        client = _EventsClient(request)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(lambda: client.done)
        self.addCleanup(client.transport.loseConnection)  # type: ignore[union-attr]
        return client


class OpenTests(_Mixin, TestCase):
    """
    A daemon without tokens.
    """

    @inlineCallbacks
    def test_webSocketRoundTrip(self) -> None:
        """
        What one WebSocket client sends reaches another (text as text,
        bytes as binary) and the TCP hub's history; C{hello} comes first.
        """
        sender = yield self.webSocket()
        receiver = yield self.webSocket()
        yield waitFor(lambda: len(self.hub.subscribers) == 2)
        self.assertEqual(len(self.service.connections), 2)
        client = sender.client
        client.sendMessage("héllo".encode())
        client.sendMessage(b"\xff\x00", isBinary=True)
        yield waitFor(lambda: len(receiver.received) == 3)
        (isBinary, hello), *messages = receiver.received
        self.assertEqual(json.loads(hello[1:])["type"], "hello")
        self.assertEqual(messages, [(False, "héllo".encode()), (True, b"\xff\x00")])
        self.assertEqual(self.hub.history.nextSequence, 3)

    @inlineCallbacks
    def test_noDelay(self) -> None:
        """
        WebSocket and event-stream clients have Nagle's algorithm off on the
        daemon's side, as TCP clients do, whichever Twisted is installed
        (its HTTP channel turns it off only from 24.10 on): a small message
        is not held back until the client acknowledges the one before.
        """
        yield self.webSocket()
        yield self.eventStream(b"GET /events HTTP/1.0\r\n\r\n")
        yield waitFor(lambda: len(list(self.service.connections)) == 2)
        for session in self.service.connections:
            sock = session.adapter.transport.getHandle()
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1, session.peer)

    @inlineCallbacks
    def test_webSocketResume(self) -> None:
        """
        C{?last=&epoch=} gets what came after, once.
        """
        self.hub.publish([b"1", b"2", b"3"])
        first = yield self.webSocket()
        yield waitFor(lambda: len(first.received) == 1)
        epoch = json.loads(first.received[0][1][1:])["epoch"]
        resumed = yield self.webSocket(f"?last=1&epoch={epoch}")
        yield waitFor(lambda: len(resumed.received) == 3)
        self.assertEqual([p for _, p in resumed.received[1:]], [b"2", b"3"])

    @inlineCallbacks
    def test_eventsResume(self) -> None:
        """
        C{/events} sends each message with its id; C{Last-Event-ID} resumes
        after it.
        """
        self.hub.publish([b"a", b"b"])
        self.hub.publish([b"c"])
        live = yield self.eventStream(b"GET /events HTTP/1.0\r\n\r\n")
        yield waitFor(lambda: len(live.events()) == 1)
        hello = json.loads(live.events()[0]["data"])
        self.hub.publish([b"d"])
        yield waitFor(lambda: len(live.events()) == 2)
        self.assertEqual(live.events()[1], {"id": f"{hello['epoch']}-4", "data": "d"})
        resumed = yield self.eventStream(
            b"GET /events HTTP/1.0\r\nLast-Event-ID: %s-1\r\n\r\n" % hello["epoch"].encode()
        )
        yield waitFor(lambda: len(resumed.events()) == 4)
        self.assertEqual([e["data"] for e in resumed.events()[1:]], ["b", "c", "d"])
        self.assertIn(b"text/event-stream", resumed.data.partition(b"\r\n\r\n")[0])

    @inlineCallbacks
    def test_metrics(self) -> None:
        """
        C{/metrics} parses with C{prometheus_client}'s parser and counts
        connections by kind, deliveries and the history.
        """
        yield self.webSocket()
        yield waitFor(lambda: len(self.hub.subscribers) == 1)
        self.hub.publish([b"x", b"y"])
        code, body = yield self.get("/metrics")
        self.assertEqual(code, 200)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        self.assertEqual(samples[("streamd_connections", (("kind", "websocket"),))], 1)
        self.assertEqual(samples[("streamd_deliveries_total", ())], 2)
        self.assertEqual(samples[("streamd_history_newest_sequence", ())], 2)
        for reason in Reason:
            self.assertIn(("streamd_disconnects_total", (("reason", reason.label),)), samples)

    @inlineCallbacks
    def test_connz(self) -> None:
        """
        C{/connz} lists every connection with its figures, sorted and
        limited as asked; a bad sort is a 400.
        """
        yield self.webSocket()
        yield self.eventStream(b"GET /events HTTP/1.0\r\n\r\n")
        yield waitFor(lambda: len(self.hub.subscribers) == 2)
        code, body = yield self.get("/connz?sort=since&limit=1")
        connz = json.loads(body)
        self.assertEqual((code, connz["total"], len(connz["connections"])), (200, 2, 1))
        row = connz["connections"][0]
        self.assertEqual(row["protocol"], "websocket")
        self.assertTrue(row["keeping_up"])
        self.assertEqual(
            set(row),
            {
                "peer",
                "listener",
                "protocol",
                "since",
                "messages_in",
                "bytes_in",
                "messages_out",
                "bytes_out",
                "lag",
                "keeping_up",
            },
        )
        code, _ = yield self.get("/connz?sort=nonsense")
        self.assertEqual(code, 400)

    @inlineCallbacks
    def test_healthzAndPage(self) -> None:
        """
        C{/healthz} answers 200 while listening; C{/} is the page.
        """
        code, body = yield self.get("/healthz")
        self.assertEqual((code, json.loads(body)["ok"]), (200, True))
        code, body = yield self.get("/")
        self.assertEqual(code, 200)
        self.assertIn(b"<title>streamd</title>", body)


class TokenTests(_Mixin, TestCase):
    """
    A daemon with C{--auth-token-file}.
    """

    def setUp(self) -> None:
        self.config = tokenConfig(self)
        super().setUp()

    @inlineCallbacks
    def test_refusals(self) -> None:
        """
        Without the token, C{/metrics}, C{/connz} and C{/events} answer 401
        and C{/ws} refuses a wrong bearer; with it they answer.
        """
        for path in ("/metrics", "/connz", "/events"):
            code, _ = yield self.get(path)
            self.assertEqual(code, 401, path)
        bearer = {b"Authorization": [b"Bearer sesame"]}
        for path in ("/metrics", "/connz"):
            code, _ = yield self.get(path, bearer)
            self.assertEqual(code, 200, path)
        stream = yield self.eventStream(b"GET /events?token=sesame HTTP/1.0\r\n\r\n")
        yield waitFor(lambda: len(stream.events()) == 1)
        yield self.assertFailure(self.webSocket(headers={"Authorization": "Bearer guess"}), Exception)
        client = yield self.webSocket(headers={"Authorization": "Bearer sesame"})
        yield waitFor(lambda: len(client.received) == 1)

    @inlineCallbacks
    def test_tokensNeverLogged(self) -> None:
        """
        No token reaches the log, right or wrong, even with the WebSocket
        library's debug lines asked for; a token in the URL of C{/metrics}
        or C{/connz} (which take it in the header only) is refused.
        """
        import txaio

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        level = txaio.get_global_log_level()
        txaio.set_global_log_level("debug")
        self.addCleanup(txaio.set_global_log_level, level)
        client = yield self.webSocket(headers={"Authorization": "Bearer sesame"})
        yield waitFor(lambda: len(client.received) == 1)
        yield self.assertFailure(self.webSocket(headers={"Authorization": "Bearer guess-0000"}), Exception)
        for path in ("/metrics?token=sesame", "/connz?token=sesame"):
            code, _ = yield self.get(path)
            self.assertEqual(code, 401, path)
        stream = yield self.eventStream(
            b"GET /events?from=here&token=sesame HTTP/1.0\r\nReferer: http://x/?token=sesame\r\n\r\n"
        )
        yield waitFor(lambda: len(stream.events()) == 1)
        # The daemon's lines, not those of this test's own clients.
        daemon = [event for event in events if "Client" not in event.get("log_namespace", "")]
        logged = "\n".join(formatEvent(event) for event in daemon)
        self.assertIn("token=***", logged)
        self.assertIn("authenticated", logged)
        self.assertNotIn("sesame", logged)
        self.assertNotIn("guess-0000", logged)


class PublicMetricsTests(_Mixin, TestCase):
    """
    C{--auth-token-file} with C{--http-public-metrics}.
    """

    publicMetrics = True

    def setUp(self) -> None:
        self.config = tokenConfig(self)
        super().setUp()

    @inlineCallbacks
    def test_public(self) -> None:
        """
        The figures answer without the token; the stream still needs it.
        """
        code, _ = yield self.get("/metrics")
        self.assertEqual(code, 200)
        code, _ = yield self.get("/events")
        self.assertEqual(code, 401)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of a C{/metrics} answer, by name and labels.
    """
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


class LimitTests(_Mixin, TestCase):
    """
    A daemon with a small C{--max-message-size}.
    """

    config = ServerConfig(maxMessageSize=100)

    @inlineCallbacks
    def test_oversizedWebSocketMessage(self) -> None:
        """
        A WebSocket message over the limit gets C{bye} with
        C{oversized_frame} and a close with code 4004, is not published, and
        is counted in C{/metrics} as a TCP client's oversized frame is.
        """
        client = yield self.webSocket()
        client.client.sendMessage(b"x" * 1000, isBinary=True)
        code = yield client.closed
        self.assertEqual(code, 4004)
        bye = json.loads(client.received[-1][1][1:])
        self.assertEqual(bye, {"type": "bye", "reason": "oversized_frame", "code": 4, "reconnect": False})
        self.assertEqual(self.hub.history.nextSequence, 1)
        _, body = yield self.get("/metrics")
        self.assertEqual(samples(body)[("streamd_disconnects_total", (("reason", "oversized_frame"),))], 1)


class CompressTests(_Mixin, TestCase):
    """
    A daemon with C{--http-compress}.
    """

    compress = 64

    @inlineCallbacks
    def test_compressedStream(self) -> None:
        """
        autobahn's client negotiates permessage-deflate and gets the stream
        whole, in fewer bytes than a client that did not offer it; what it
        sends compressed reaches that client as it was.
        """
        compressed = yield self.webSocket(deflate=True)
        plain = yield self.webSocket()
        yield waitFor(lambda: len(self.hub.subscribers) == 2)
        (extension,) = compressed.client.websocket_extensions_in_use
        self.assertTrue(extension.server_no_context_takeover)
        self.assertEqual(plain.client.websocket_extensions_in_use, [])
        messages = [
            json.dumps({"n": n, "rows": [{"price": n * 7, "side": "buy"}] * 20}).encode() for n in range(50)
        ]
        messages.append(b"short")
        before = self.hub.stats.bytesOut
        self.hub.publish(messages)
        yield waitFor(lambda: len(compressed.received) == len(plain.received) == 1 + len(messages))
        self.assertEqual(compressed.received[1:], [(False, m) for m in messages])
        self.assertEqual(plain.received[1:], compressed.received[1:])
        sent = self.hub.stats.bytesOut - before
        self.assertLess(sent, 1.3 * sum(map(len, messages)))
        compressed.client.sendMessage(messages[0])
        yield waitFor(lambda: len(plain.received) == 2 + len(messages))
        self.assertEqual(plain.received[-1], (False, messages[0]))


class ShutdownTests(_Mixin, TestCase):
    """
    What a WebSocket client gets when the daemon stops.
    """

    @inlineCallbacks
    def test_backlogThenBye(self) -> None:
        """
        A WebSocket client that is behind when the daemon stops (as SIGTERM
        stops it) gets every message published before, in order, then
        C{bye} with C{shutdown} and a close with code 1012 (service
        restart).
        """
        client = yield self.webSocket()
        yield waitFor(lambda: len(client.received) == 1)
        client.client.transport.pauseProducing()
        (connection,) = list(self.service.connections)
        published = 0
        while connection.cursor.live:
            self.hub.publish([b"%d" % n + b"." * 1000 for n in range(published, published + 100)])
            published += 100
            yield deferLater(reactor, 0, lambda: None)
        # What follows waits in the history, not in the connection's buffer.
        self.hub.publish([b"%d" % n + b"." * 1000 for n in range(published, published + 100)])
        published += 100
        self.assertGreater(connection.cursor.behind, 0)
        # What SIGTERM's stopService does once the listeners and sources
        # have stopped, called at once so that the client is still behind;
        # a shutdown timeout long enough for a loaded machine.
        closing = self.service.closeConnections(60)
        client.client.transport.resumeProducing()
        code = yield client.closed
        yield closing
        self.assertEqual(code, 1012)
        messages = [payload for _, payload in client.received[1:-1]]
        self.assertEqual([int(m.split(b".")[0]) for m in messages], list(range(published)))
        bye = json.loads(client.received[-1][1][1:])
        self.assertEqual(
            (bye["type"], bye["reason"], bye["code"], bye["reconnect"]), ("bye", "shutdown", 11, True)
        )


class _Raw(Protocol):
    """
    A raw client that sends C{request} and, unless told to read, reads
    nothing: what it got, and whether it was closed.
    """

    def __init__(self, request: bytes, reads: bool = True) -> None:
        self.request = request
        self.reads = reads
        self.data = b""
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if not self.reads:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(None)


class HostileTests(_Mixin, TestCase):
    """
    Clients that would hold the daemon's descriptors or memory: each is
    cut, counted, and leaves room for the others.
    """

    config = ServerConfig(maxClients=10)
    headerTimeout = 0.5

    @inlineCallbacks
    def raw(self, request: bytes, reads: bool = True) -> Any:
        client = _Raw(request, reads)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(lambda: client.done)
        self.addCleanup(client.transport.abortConnection)  # type: ignore[union-attr]
        return client

    @inlineCallbacks
    def test_slowloris(self) -> None:
        """
        Half-sent requests count in C{--max-clients}: past it a connection
        is refused with 503; once their heads time out they are closed
        (408) and the daemon answers again.
        """
        slow = []
        for _ in range(10):
            slow.append((yield self.raw(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")))
        yield waitFor(lambda: len(self.service.connections) == 10)
        refused = yield self.raw(b"")
        yield refused.done
        self.assertTrue(refused.data.startswith(b"HTTP/1.1 503 "), refused.data)
        for client in slow:
            yield client.done
            self.assertTrue(client.data.startswith(b"HTTP/1.1 408 "), client.data)
        code, _ = yield self.get("/healthz")
        self.assertEqual(code, 200)
        disconnects = self.hub.stats.disconnects
        self.assertEqual((disconnects[Reason.MAX_CLIENTS], disconnects[Reason.HEADER_TIMEOUT]), (1, 10))

    @inlineCallbacks
    def test_chunkedBody(self) -> None:
        """
        A chunked POST, before any token, is answered 413 and closed as
        soon as its head is in; the megabyte after it is not taken.
        """
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        client = yield self.raw(
            b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
        )
        yield client.done
        self.assertTrue(client.data.startswith(b"HTTP/1.1 413 "), client.data)
        self.assertEqual(self.hub.stats.disconnects[Reason.REQUEST_BODY], 1)

    @inlineCallbacks
    def test_pipelineNonReader(self) -> None:
        """
        A client that sends 20,000 requests for C{/metrics} at once and reads
        none of the answers is cut once the daemon's buffer for it is full,
        counted under C{pipeline}.
        """
        client = yield self.raw(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" * 20_000, reads=False)
        yield waitFor(lambda: self.hub.stats.disconnects[Reason.PIPELINE] == 1, seconds=30)
        client.transport.resumeProducing()  # type: ignore[union-attr]
        yield client.done

    @inlineCallbacks
    def test_pingFlood(self) -> None:
        """
        A WebSocket client that sends pings and reads nothing gets no pongs
        piled up for it once its connection is full, and is cut (C{ping_flood})
        after L{MAX_UNANSWERED_PINGS} more.
        """
        handshake = (
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        client = yield self.raw(handshake, reads=False)
        ping = bytes((0x89, 0x80 | 125)) + b"\0\0\0\0" + b"p" * 125
        for _ in range(400):
            if self.hub.stats.disconnects[Reason.PING_FLOOD] or client.done.called:
                break
            client.transport.write(ping * 1000)  # type: ignore[union-attr]
            yield deferLater(reactor, 0.01, lambda: None)
        yield waitFor(lambda: self.hub.stats.disconnects[Reason.PING_FLOOD] == 1)
        self.assertGreater(MAX_UNANSWERED_PINGS, 0)


HANDSHAKE = (
    b"GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)

CLOSE = bytes((0x88, 0x82)) + b"\0\0\0\0" + (1000).to_bytes(2, "big")
"""
A client's close frame (code 1000), masked with a zero mask.
"""


class _SlowReader(_Raw):
    """
    A raw client that reads a little at a time: after each read it stops
    reading for a moment, so the daemon's socket keeps filling up.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        transport: Any = self.transport
        transport.pauseProducing()
        reactor.callLater(0.001, transport.resumeProducing)  # type: ignore[attr-defined]


class _SocketPathMixin(_Mixin):
    """
    A WebSocket client on a TCP connection is sent to straight from the
    history (L{SocketCursor}, or L{SocketMux} for several streams), after
    the handshake's answer, every frame whole.
    """

    flow = FlowControl(history=256 << 20, maxBehind=256 << 20)
    path = b"/ws"
    outlet: type = SocketCursor

    def stream(self) -> Any:
        return self.hub

    @inlineCallbacks
    def connect(self, protocol: type[_Raw] = _Raw, reads: bool = True) -> Any:
        client = protocol(HANDSHAKE % self.path, reads)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        self.addCleanup(lambda: client.done)
        self.addCleanup(client.transport.abortConnection)  # type: ignore[union-attr]
        yield waitFor(lambda: len(self.stream().subscribers) == 1)
        (connection,) = list(self.service.connections)
        self.assertIsInstance(connection.outlet, self.outlet)
        return client

    def published(self, count: int) -> list[bytes]:
        """
        Publish C{count} messages of many sizes, up to 200 KB.
        """
        messages = [bytes([48 + n % 40]) * (n * 7919 % 200_000 + 1) for n in range(count)]
        for message in messages:
            self.stream().publish([message])
        return messages

    def parse(self, data: bytes) -> tuple[list[dict[str, Any]], list[bytes], list[tuple[int, bytes]]]:
        """
        The control messages, the stream's messages and the close frames
        of what the daemon sent after its handshake's answer, which it
        checks came first; every frame must parse whole.
        """
        answer, _, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer[:60])
        frames = serverFrames(rest)
        messages = [p for op, p in frames if op in (1, 2) and p[:1] != b"\x1e"]
        return controls(frames), messages, [(op, p) for op, p in frames if op == 8]

    @inlineCallbacks
    def test_slowReaderWhole(self) -> None:
        """
        A client that reads a little at a time, far behind, gets the
        handshake's answer first, then every message whole and in order.
        """
        client = yield self.connect(_SlowReader)
        messages = self.published(300)
        total = sum(map(len, messages))
        yield waitFor(lambda: len(client.data) > total, seconds=60)
        yield waitFor(lambda: len(self.parse(client.data)[1]) == len(messages), seconds=60)
        controlMessages, received, _ = self.parse(client.data)
        self.assertEqual(controlMessages[0]["type"], "hello")
        self.assertEqual(received, messages)

    @inlineCallbacks
    def test_closeInBacklog(self) -> None:
        """
        A client that closes while far behind gets whole frames, then the
        answer to its close, and nothing after it.
        """
        client = yield self.connect(reads=False)
        messages = self.published(300)
        client.transport.write(CLOSE)
        client.transport.resumeProducing()
        yield client.done
        _, received, closes = self.parse(client.data)
        self.assertEqual(received, messages[: len(received)])
        self.assertEqual(closes, [(8, (1000).to_bytes(2, "big"))])
        self.assertTrue(client.data.endswith(bytes((0x88, 2)) + (1000).to_bytes(2, "big")))


class SocketPathTests(_SocketPathMixin, TestCase):
    """
    C{/ws}: one stream, through a L{SocketCursor}.
    """


class SeveralStreamsSocketPathTests(_SocketPathMixin, TestCase):
    """
    C{/ws/news}: through a L{SocketMux}.
    """

    path = b"/ws/news"
    outlet = SocketMux

    def stream(self) -> Any:
        return self.service.streams.open("news")
