"""
Tests for the web clients of several streams: C{/ws/SUBJECTS} and
C{/events/SUBJECTS} on test transports, their messages labelled with their
stream, resumed per stream, refused with an HTTP status before the stream
and with a C{refused} message after; and a WebSocket client's control
messages.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy, StreamRights
from streamd.config import FlowControl, ServerConfig, StreamsConfig
from streamd.fanout.hub import Hub
from streamd.reasons import Reason
from streamd.session import MAX_UNANSWERED_PINGS
from streamd.web.context import WebContext
from streamd.web.framing import StreamEventFraming, StreamWebSocketFraming
from streamd.web.subjects import MAX_SUBJECTS

from .test_web_websocket import _Client
from .webtools import SiteConnection, cancelBatchedTimers, controls, events, webContext

OLD_EPOCH = "ffeeddccbbaa9988"
"""
The epoch of a stream in a run of the daemon before this one.
"""


def position(hub: Hub, seq: int) -> str:
    """
    The position after message C{seq} of C{hub}'s stream.
    """
    return f"{hub.name}/{hub.history.epoch.hex()}-{seq}"


class _ReadsOnly(StreamRights):
    """
    The rights of a token that may read and publish to the streams under
    C{prices.} only.
    """

    def reads(self, name: str) -> bool:
        return name.startswith("prices.")

    publishes = reads


class _PricesPolicy(AccessPolicy):
    """
    Rules under which every client has L{_ReadsOnly}'s rights, as an
    access file could grant them.
    """

    perStream = True

    def initialRights(self) -> StreamRights:
        return _ReadsOnly()


def streamMessages(frames: list[tuple[int, bytes]]) -> list[tuple[str, int, bytes]]:
    """
    Each stream message among C{frames} with its stream and number, read
    as a client does: after the C{in} control that precedes it.
    """
    read = []
    stream, seq = "", 0
    for opcode, payload in frames:
        if opcode == 1 and payload[:1] == b"\x1e":
            control = json.loads(payload[1:])
            if control["type"] == "in":
                stream, seq = control["stream"], control["first"]
        elif opcode in (1, 2):
            read.append((stream, seq, payload))
            seq += 1
    return read


class _Streams:
    """
    A context of several streams, and the clients' controls by type.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)  # type: ignore[attr-defined]
        self.context = webContext()

    def stream(self, name: str) -> Hub:
        streams = self.context.streams
        assert streams is not None
        return streams.open(name)

    def kinds(self, client: _Client, kind: str) -> list[dict[str, Any]]:
        return [c for c in controls(client.frames()) if c["type"] == kind]


class WebSocketStreamsTests(_Streams, SynchronousTestCase):
    """
    A WebSocket client of C{/ws/SUBJECTS}.
    """

    def test_labelled(self) -> None:
        """
        A client of two streams is told hello, then each stream as it
        starts (its epoch, its next number), and gets each stream's
        messages after an C{in} control naming the stream and the first's
        number: each stream in order.
        """
        client = _Client(self.context, b"/a,b")
        a, b = self.stream("a"), self.stream("b")
        a.publish([b"a1", b"a2"])
        b.publish([b"b1"])
        a.publish([b"a3"])
        self.assertEqual(client.status.split(b" ")[1], b"101")
        hello, *announced = [c for c in controls(client.frames()) if c["type"] in ("hello", "stream")]
        self.assertEqual(hello, {"type": "hello"})
        self.assertEqual(
            announced,
            [
                {"type": "stream", "stream": "a", "epoch": a.history.epoch.hex(), "next": 1},
                {"type": "stream", "stream": "b", "epoch": b.history.epoch.hex(), "next": 1},
            ],
        )
        self.assertEqual(
            streamMessages(client.frames()),
            [("a", 1, b"a1"), ("a", 2, b"a2"), ("b", 1, b"b1"), ("a", 3, b"a3")],
        )

    def test_pattern(self) -> None:
        """
        A pattern (its C{>} percent-encoded, as a browser sends it) gets
        the matching streams that exist and those made after it
        subscribed, and no other.
        """
        self.stream("logs.web").publish([b"before"])
        client = _Client(self.context, b"/logs.%3E")
        self.stream("logs.web").publish([b"w1"])
        self.stream("logs.db.main").publish([b"d1"])
        self.stream("prices").publish([b"p1"])
        self.assertEqual(
            streamMessages(client.frames()), [("logs.web", 2, b"w1"), ("logs.db.main", 1, b"d1")]
        )

    def test_encodedOnce(self) -> None:
        """
        An entry of a stream is framed once for all its clients of several
        streams: they share the stream's framing, and the history holds one
        encoding of it.
        """
        clients = [_Client(self.context, b"/a") for _ in range(3)]
        a = self.stream("a")
        a.publish([b"x" * 100])
        cursors = [c.protocol.session.subscriptions.cursors[a] for c in clients]  # type: ignore[union-attr]
        self.assertEqual({id(cursor.framing) for cursor in cursors}, {id(cursors[0].framing)})
        self.assertIsInstance(cursors[0].framing, StreamWebSocketFraming)
        self.assertEqual(a.history.encodingBytes, len(a.history.encoded(a.history[0], cursors[0].framing)))

    def test_resumePerStream(self) -> None:
        """
        C{?after=NAME/EPOCH-SEQ}, one per stream, resumes each after its
        own position; a position of a previous run is a C{restarted} gap in
        its stream.
        """
        a, b = self.stream("a"), self.stream("b")
        a.publish([b"a1", b"a2", b"a3"])
        b.publish([b"b1", b"b2"])
        query = f"/a,b?after={position(a, 1)}&after=b/{OLD_EPOCH}-7"
        client = _Client(self.context, query.encode())
        self.assertEqual(
            streamMessages(client.frames()),
            [("a", 2, b"a2"), ("a", 3, b"a3"), ("b", 1, b"b1"), ("b", 2, b"b2")],
        )
        self.assertEqual(
            self.kinds(client, "gap"),
            [{"type": "gap", "stream": "b", "first": 1, "last": 0, "reason": "restarted"}],
        )
        self.assertEqual([c["next"] for c in self.kinds(client, "stream")], [2, 1])

    def test_resumePatternFromOldest(self) -> None:
        """
        A pattern subscription that resumes gets the streams it has a
        position for from there, and the others from their oldest message
        held, after a gap in that stream if some left its history.
        """
        self.context = webContext(flow=FlowControl(history=400))
        known, other = self.stream("s.known"), self.stream("s.other")
        known.publish([b"k1", b"k2"])
        for n in range(1, 41):
            other.publish([b"o%02d" % n])
        oldest = other.history.oldestEntry()
        assert oldest is not None
        client = _Client(self.context, f"/s.*?after={position(known, 1)}".encode())
        read = streamMessages(client.frames())
        self.assertEqual([m for m in read if m[0] == "s.known"], [("s.known", 2, b"k2")])
        self.assertEqual(
            [m for m in read if m[0] == "s.other"],
            [("s.other", n, b"o%02d" % n) for n in range(oldest[0], 41)],
        )
        self.assertEqual(self.kinds(client, "gap"), [])

    def test_evictedGapInItsStream(self) -> None:
        """
        A position whose messages left the history is a gap that names its
        stream.
        """
        self.context = webContext(flow=FlowControl(history=200))
        a = self.stream("a")
        for n in range(1, 41):
            a.publish([b"m%02d" % n])
        oldest = a.history.oldestEntry()
        assert oldest is not None
        client = _Client(self.context, f"/a?after={position(a, 2)}".encode())
        self.assertEqual(
            self.kinds(client, "gap"),
            [{"type": "gap", "stream": "a", "first": 3, "last": oldest[0] - 1, "reason": "evicted"}],
        )

    def test_refusedBeforeTheStream(self) -> None:
        """
        A request the daemon cannot serve is refused with an HTTP status
        and says why, counted under its reason: a subject or a position
        that does not parse, or the parameters of C{/ws} (400), too many
        subjects (400).
        """
        too_many = ",".join(f"s{n}" for n in range(MAX_SUBJECTS + 1))
        for query in (
            b"/a%20b",
            b"/",
            b"/a.>.b",
            b"/a?last=1&epoch=00112233aabbccdd",
            b"/a?after=a-1",
            b"/a?after=a/00112233aabbccdd-x",
            b"/" + too_many.encode(),
        ):
            client = _Client(self.context, query)
            self.assertEqual(client.status.split(b" ")[1], b"400", query)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.BAD_REQUEST], 7)

    def test_streamsThatCannotBe(self) -> None:
        """
        Under C{--streams declared} an undeclared stream is a 404; past
        C{--max-streams} a new one is a 503; a pattern is never refused
        for the streams it does not match.
        """
        self.context = webContext(streamsConfig=StreamsConfig(declaredOnly=True, declared=("known",)))
        self.assertIn(b" 404 ", _Client(self.context, b"/known,unknown").status)
        self.assertIn(b" 101 ", _Client(self.context, b"/known,un.*").status)
        self.context = webContext(streamsConfig=StreamsConfig(maxStreams=2))
        self.assertIn(b" 101 ", _Client(self.context, b"/one").status)
        self.assertIn(b" 503 ", _Client(self.context, b"/two").status)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.BAD_REQUEST], 1)

    def test_forbidden(self) -> None:
        """
        A stream the client's rights do not let it read is a 403 (counted
        under C{forbidden}); a pattern gets only the streams it may read.
        """
        self.context = webContext(ServerConfig(access=_PricesPolicy()))
        self.assertIn(b" 403 ", _Client(self.context, b"/prices.eu,logs").status)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.FORBIDDEN], 1)
        client = _Client(self.context, b"/*")
        self.stream("prices").publish([b"no: one token"])
        self.stream("logs").publish([b"not for it"])
        self.stream("prices.eu").publish([b"yes"])
        self.assertEqual(streamMessages(client.frames()), [])
        client = _Client(self.context, b"/*.*")
        self.stream("prices.us").publish([b"us"])
        self.stream("logs.web").publish([b"no"])
        self.assertEqual(streamMessages(client.frames()), [("prices.us", 1, b"us")])

    def test_oneStreamListener(self) -> None:
        """
        A listener that serves one stream only (its context has no streams)
        answers a named one with 404.
        """
        context = self.context
        single = WebContext(context.hub, context.clock, context.config, context.connections)
        self.assertIn(b" 404 ", _Client(single, b"/a").status)

    def test_publishToItsStream(self) -> None:
        """
        The messages of a client of one named stream go to that stream;
        it is told C{own} for them in that stream, not sent them back, and
        another client gets them.
        """
        sender, other = _Client(self.context, b"/a"), _Client(self.context, b"/a")
        sender.send(b"mine")
        self.assertEqual(streamMessages(other.frames()), [("a", 1, b"mine")])
        self.assertEqual(streamMessages(sender.frames()), [])
        self.assertEqual(self.kinds(sender, "own"), [{"type": "own", "stream": "a", "first": 1, "last": 1}])

    def test_in(self) -> None:
        """
        C{in} names the stream the client's messages go to next (made if
        need be); a binary message that begins with the control character
        is a message, not a control.
        """
        client = _Client(self.context, b"/a")
        client.send(b'\x1e{"type":"in","stream":"b.new"}')
        client.send(b"to b")
        client.send(b"\x1e{}", opcode=2)
        b = self.stream("b.new")
        self.assertEqual(
            b.history.payloads(b.history[0]) + b.history.payloads(b.history[1]), [b"to b", b"\x1e{}"]
        )

    def test_noStreamNamed(self) -> None:
        """
        A client of a pattern, or of several subjects, that sends a message
        before it names its stream with C{in} is cut (C{bad_request}).
        """
        for query in (b"/a.*", b"/a,b"):
            client = _Client(self.context, query)
            client.send(b"where?")
            self.assertEqual(self.kinds(client, "bye")[0]["reason"], "bad_request")

    def test_refusedPublish(self) -> None:
        """
        A message for a stream that cannot be made, or that the client may
        not publish to, is refused with C{refused}: the client goes on.
        """
        self.context = webContext(ServerConfig(access=_PricesPolicy()))
        client = _Client(self.context, b"/prices.eu")
        client.send(b'\x1e{"type":"in","stream":"logs"}')
        client.send(b"no")
        client.send(b'\x1e{"type":"in","stream":"not a name"}')
        client.send(b"no")
        self.assertEqual([r["subject"] for r in self.kinds(client, "refused")], ["logs", "not a name"])
        self.assertFalse(client.transport.disconnecting)

    def test_subscribeAndUnsubscribe(self) -> None:
        """
        C{subscribe} adds a stream or pattern, from a position if it gives
        one; C{unsubscribe} stops one (after the entry begun); a subject
        that is not one is refused.
        """
        b = self.stream("b")
        b.publish([b"b1", b"b2"])
        client = _Client(self.context, b"/a")
        subscribe = {"type": "subscribe", "subject": "b", "after": [position(b, 1)]}
        client.send(b"\x1e" + json.dumps(subscribe).encode())
        b.publish([b"b3"])
        client.send(b'\x1e{"type":"unsubscribe","subject":"b"}')
        b.publish([b"b4"])
        client.send(b'\x1e{"type":"subscribe","subject":"c d"}')
        self.assertEqual(streamMessages(client.frames()), [("b", 2, b"b2"), ("b", 3, b"b3")])
        self.assertEqual([r["subject"] for r in self.kinds(client, "refused")], ["c d"])

    def test_badControl(self) -> None:
        """
        A control message that is not one cuts the client (C{bad_request}).
        """
        for control in (
            b"not json",
            b"[]",
            b'{"type":"dance"}',
            b'{"type":"in"}',
            b'{"type":"subscribe","subject":"a","after":"a/00112233aabbccdd-1"}',
            b'{"type":"subscribe","subject":"a","after":["a-1"]}',
        ):
            client = _Client(self.context, b"/a")
            client.send(b"\x1e" + control)
            self.assertEqual(self.kinds(client, "bye")[0]["reason"], "bad_request", control)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.BAD_REQUEST], 6)

    def test_controlThatBreaksTheParser(self) -> None:
        """
        A control message that Python's parsers refuse (a position's number
        in digits that are not ASCII, or past 20 digits; JSON nested too
        deep) cuts the client as any other, saying why: nothing unhandled.
        """
        for control in (
            b'{"type":"subscribe","subject":"a","after":["a/00112233aabbccdd-\xc2\xb2"]}',
            b'{"type":"subscribe","subject":"a","after":["a/00112233aabbccdd-%s"]}' % (b"9" * 5000),
            b"[" * 100000,
        ):
            client = _Client(self.context, b"/a")
            client.send(b"\x1e" + control)
            self.assertEqual(self.kinds(client, "bye")[0]["reason"], "bad_request", control[:80])
            self.assertEqual(client.frames()[-1][0], 8)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.BAD_REQUEST], 3)

    def test_tokenInBand(self) -> None:
        """
        A browser's client sends its token as its first message; its
        streams start once it has, and a stream it may not read is then
        refused with C{refused}, not an HTTP status.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.context = webContext(ServerConfig(access=_TokenPolicy(self)))
        client = _Client(self.context, b"/prices.eu,logs")
        self.assertIn(b" 101 ", client.status)
        self.stream("prices.eu").publish([b"not yet"])
        client.send(b"sesame")
        self.stream("prices.eu").publish([b"now"])
        self.assertEqual(streamMessages(client.frames()), [("prices.eu", 2, b"now")])
        self.assertEqual([r["subject"] for r in self.kinds(client, "refused")], ["logs"])
        self.assertNotIn("sesame", " ".join(str(event) for event in log))

    def test_pingWhileFull(self) -> None:
        """
        A client of several streams whose connection takes nothing gets
        one pong held for it, not one per ping, and is cut
        (C{ping_flood}) after L{MAX_UNANSWERED_PINGS} more; while it takes
        what it is sent, each ping is answered.
        """
        client = _Client(self.context, b"/a")
        client.send(b"1", opcode=9)
        self.assertEqual([p for op, p in client.frames() if op == 10], [b"1"])
        client.protocol.transport.producer.pauseProducing()
        for n in range(MAX_UNANSWERED_PINGS + 1):
            client.send(b"%d" % n, opcode=9)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.PING_FLOOD], 0)
        client.send(b"last", opcode=9)
        self.assertEqual(self.context.hub.stats.disconnects[Reason.PING_FLOOD], 1)
        self.assertEqual([p for op, p in client.frames() if op == 10], [b"1", b"0"])


class _TokenPolicy(AccessPolicy):
    """
    C{--auth-token-file} of the token C{sesame}, under which a token may
    read only the streams under C{prices.}.
    """

    perStream = True

    def __init__(self, case: SynchronousTestCase) -> None:
        from .webtools import tokenConfig

        super().__init__(auth=tokenConfig(case).access.auth)

    def rightsForDigest(self, tokenDigest: bytes) -> StreamRights:
        return _ReadsOnly()


def sseEvents(connection: SiteConnection) -> list[dict[str, str]]:
    """
    The events an HTTP/1.0 client of C{/events} got so far.
    """
    return events(connection.body().decode())


class EventStreamsTests(_Streams, SynchronousTestCase):
    """
    A Server-Sent Events client of C{/events/SUBJECTS}.
    """

    def request(self, path: str, headers: str = "", version: str = "1.0") -> SiteConnection:
        connection = SiteConnection(self.context)
        connection.send(f"GET /events{path} HTTP/{version}\r\nHost: localhost\r\n{headers}\r\n".encode())
        return connection

    def test_labelled(self) -> None:
        """
        Each event's id is C{NAME/EPOCH-SEQ}; C{hello} comes first, then
        C{stream} as each starts.
        """
        connection = self.request("/a,b")
        a, b = self.stream("a"), self.stream("b")
        a.publish([b"a1"])
        b.publish([b"b1", b"b\n2"])
        got = sseEvents(connection)
        self.assertEqual(connection.status(), 200)
        self.assertEqual([e.get("event") for e in got[:3]], ["hello", "stream", "stream"])
        self.assertEqual(
            json.loads(got[1]["data"]), {"stream": "a", "epoch": a.history.epoch.hex(), "next": 1}
        )
        self.assertEqual(
            [(e["id"], e["data"]) for e in got[3:]],
            [(position(a, 1), "a1"), (position(b, 1), "b1"), (position(b, 2), "b\n2")],
        )

    def test_chunkedAndPlain(self) -> None:
        """
        HTTP/1.1 and HTTP/1.0 clients of a stream each share one framing
        of the stream's: chunked, and not.
        """
        old, new = self.request("/a"), self.request("/a", version="1.1")
        a = self.stream("a")
        framings = {
            c.protocol.session.subscriptions.cursors[a].framing  # type: ignore[attr-defined]
            for c in (old.transport, new.transport)
        }
        self.assertEqual(
            {(type(f), f.chunked) for f in framings},
            {(StreamEventFraming, False), (StreamEventFraming, True)},
        )

    def test_lastEventId(self) -> None:
        """
        A browser resumes with the id of the last event it got, which names
        its stream: that one resumes after it, those of C{?after=} after
        theirs (the header's is newer for its stream), the others of a
        pattern from their oldest message.
        """
        a, b, c = self.stream("s.a"), self.stream("s.b"), self.stream("s.c")
        for hub in (a, b, c):
            hub.publish([b"1", b"2", b"3"])
        headers = f"Last-Event-ID: {position(b, 2)}\r\n"
        connection = self.request(f"/s.*?after={position(a, 2)}&after={position(b, 1)}", headers)
        got = [(e["id"], e["data"]) for e in sseEvents(connection) if "id" in e]
        self.assertEqual(
            got,
            [(position(a, 3), "3"), (position(b, 3), "3")] + [(position(c, n), str(n)) for n in (1, 2, 3)],
        )

    def test_refused(self) -> None:
        """
        A request refused before its stream gets an HTTP status and one
        line saying why: a position of C{/events} (without its stream),
        a subject that is not one (400); a stream that may not be read
        (403).
        """
        bad = self.request("/a", "Last-Event-ID: 00112233aabbccdd-4\r\n")
        self.assertEqual(
            (bad.status(), bad.body()),
            (400, b"asked for '00112233aabbccdd-4', which is not a position: NAME/EPOCH-SEQ\n"),
        )
        self.assertEqual(self.request("/a b").status(), 400)
        self.context = webContext(ServerConfig(access=_PricesPolicy()))
        forbidden = self.request("/logs")
        self.assertEqual((forbidden.status(), forbidden.body()), (403, b"this client may not read 'logs'\n"))
        self.context = webContext(streamsConfig=StreamsConfig(declaredOnly=True))
        missing = self.request("/nope")
        self.assertEqual(missing.status(), 404)
        self.assertIn(b"--streams declared", missing.body())
