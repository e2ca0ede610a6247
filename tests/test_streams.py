"""
Tests for named streams: L{streamd.fanout.streams} (the registry), and a
C{seq} client of several streams (version 4) end to end in memory: by name
and by pattern, with streams made later, resumed per stream, refused,
published to by name.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from streamd.client.seq import SeqClientFactory
from streamd.config import FlowControl, ServerConfig, StreamsConfig
from streamd.fanout.cursor import Cursor
from streamd.fanout.hub import Hub
from streamd.fanout.mux import SocketMux
from streamd.fanout.resume import Start
from streamd.fanout.streams import OVERFLOW_RETRY, StreamRefused, Streams
from streamd.framing import INT32
from streamd.names import DEFAULT, BadName, matches
from streamd.seqframing import (
    SEQ,
    ClientHello,
    Position,
    Refused,
    SBatch,
    SGap,
    SMsg,
    SPub,
    StreamStart,
    Sub,
    Unsub,
    decodeServerFrame,
    framed,
)
from streamd.seqserver import SeqServerFactory
from streamd.stats import Stats

from .support import frames
from .test_socketcursor import Owner, readAll, socketPair


class RegistryTests(SynchronousTestCase):
    """
    L{Streams} makes a stream when it is first named, within its bounds,
    tells pattern watchers of it, and forgets idle ones.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def streams(self, **settings: Any) -> Streams:
        return Streams(Stats(), self.clock, FlowControl(), StreamsConfig(**settings))

    def test_default(self) -> None:
        """
        Every daemon has the stream C{default}, numbered 0.
        """
        streams = self.streams()
        self.assertEqual(streams.default.name, DEFAULT)
        self.assertEqual(streams.default.number, 0)
        self.assertIs(streams.get(DEFAULT), streams.default)
        self.assertEqual(len(streams), 1)

    def test_openMakesOnce(self) -> None:
        """
        Opening a name makes its stream once, with a number of its own.
        """
        streams = self.streams()
        prices = streams.open("prices.eu")
        self.assertIs(streams.open("prices.eu"), prices)
        self.assertEqual(prices.number, 1)
        self.assertEqual(streams.open("logs").number, 2)

    def test_badName(self) -> None:
        """
        A name that is not one is refused with L{BadName}, and nothing is made.
        """
        streams = self.streams()
        self.assertRaises(BadName, streams.open, "prices.*")
        self.assertRaises(BadName, streams.open, "a..b")
        self.assertEqual(len(streams), 1)

    def test_maxStreams(self) -> None:
        """
        Past C{--max-streams}, a new stream is refused with a line that
        says why; existing ones still open.
        """
        streams = self.streams(maxStreams=2)
        streams.open("a")
        error = self.assertRaises(StreamRefused, streams.open, "b")
        self.assertEqual(str(error), "no stream 'b': the daemon holds --max-streams 2 streams")
        self.assertIsNotNone(streams.open("a"))

    def test_declaredOnly(self) -> None:
        """
        With C{--streams declared}, only the declared streams exist.
        """
        streams = Streams(Stats(), self.clock, FlowControl(), StreamsConfig(declaredOnly=True), ("prices",))
        self.assertIsNotNone(streams.get("prices"))
        error = self.assertRaises(StreamRefused, streams.open, "logs")
        self.assertIn("only the declared streams exist", str(error))

    def test_watchersToldOfNewStreams(self) -> None:
        """
        A pattern's watcher gets the streams it matches now, and is told of
        each one made later that it matches, once; not after it stops.
        """
        streams = self.streams()
        streams.open("prices.eu")
        told: list[str] = []

        class Watcher:
            def streamAppeared(self, hub: Hub) -> None:
                told.append(hub.name)

        watcher = Watcher()
        self.assertEqual([hub.name for hub in streams.watch("prices.*", watcher)], ["prices.eu"])
        streams.open("prices.us")
        streams.open("logs.web")
        streams.open("prices.us")
        self.assertEqual(told, ["prices.us"])
        streams.unwatch("prices.*", watcher)
        streams.open("prices.jp")
        self.assertEqual(told, ["prices.us"])

    def test_idleExpire(self) -> None:
        """
        With C{--stream-idle}, a stream with no subscriber, publisher or
        message for that long is forgotten (its number is not reused);
        declared streams stay.
        """
        streams = Streams(Stats(), self.clock, FlowControl(), StreamsConfig(idleTimeout=10.0), ("kept",))
        busy = streams.open("busy")
        streams.open("idle")
        self.clock.advance(6)
        busy.publish([b"x"])
        self.clock.advance(4)
        self.assertIsNone(streams.get("idle"))
        self.assertIsNotNone(streams.get("busy"))
        self.clock.advance(10)
        self.assertIsNone(streams.get("busy"))
        self.assertIsNotNone(streams.get("kept"))
        self.assertEqual(streams.open("idle").number, 4)
        streams.stop()

    def test_sharedHistoryBudget(self) -> None:
        """
        C{--history} bounds what all streams hold together: past it, the
        largest streams lose their oldest messages first.
        """
        streams = Streams(Stats(), self.clock, FlowControl(history=8000))
        big, small = streams.open("big"), streams.open("small")
        for _ in range(10):
            big.publish([b"x" * 500])
        small.publish([b"y" * 500])
        for _ in range(6):
            big.publish([b"x" * 500])
        self.assertLessEqual(streams.pool.held, 8000)
        self.assertEqual(small.history.size, 504)
        self.assertLess(big.history.size, 16 * 504)

    def test_pinnedHistory(self) -> None:
        """
        When what the streams hold is all needed by subscribers that keep
        up (so a trim frees nothing), they are not trimmed again at every
        message, but a little later; once the subscribers have taken it,
        the next trim gets them under the budget.
        """
        streams = Streams(Stats(), self.clock, FlowControl(history=8000), StreamsConfig(streamHistory=6000))
        cursors = []
        for name in ("a", "b"):
            hub = streams.open(name)
            cursor = Cursor(StringTransport(), hub, INT32, Owner())
            hub.subscribe(cursor)
            cursor.pauseProducing()
            cursors.append(cursor)
        for _ in range(10):
            for name in ("a", "b"):
                streams.open(name).publish([b"x" * 496])
        self.assertEqual(streams.pool.held, 10_000)
        self.assertEqual(streams.pool.retryAt, OVERFLOW_RETRY)
        for cursor in cursors:
            cursor.resumeProducing()
        streams.open("b").publish([b"x" * 496])
        self.assertEqual(streams.pool.held, 10_500)
        self.clock.advance(OVERFLOW_RETRY)
        streams.open("b").publish([b"x" * 496])
        self.assertLessEqual(streams.pool.held, 7000)

    def test_streamHistoryCap(self) -> None:
        """
        C{--stream-history} bounds each stream on its own.
        """
        streams = self.streams(streamHistory=2000)
        hub = streams.open("a")
        for _ in range(10):
            hub.publish([b"x" * 500])
        self.assertLessEqual(hub.history.size, 2000)


class StreamsDaemon:
    """
    A daemon's streams with a C{seq} listener on the stream C{default}, on a
    L{Clock}; clients on L{StringTransport}s.
    """

    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        self.streams = Streams(Stats(), self.clock, FlowControl(), StreamsConfig(**settings))
        self.factory = SeqServerFactory(
            self.streams.default, self.clock, ServerConfig(heartbeat=None), SEQ, streams=self.streams
        )
        self._port = 40000

    def connect(self, *sent: Any) -> tuple[Any, StringTransport]:
        self._port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._port)
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        protocol.dataReceived(framed(ClientHello(4, Start.NONE, bytes(8), 0)))
        for frame in sent:
            protocol.dataReceived(framed(frame))
        return protocol, transport

    def publish(self, name: str, *messages: bytes) -> None:
        self.streams.open(name).publish(list(messages))


def heard(transport: StringTransport) -> list[tuple[Any, ...]]:
    """
    What a version 4 client was told after its HELLO: C{(stream, seq,
    message)} per message, C{("stream", name, next)}, C{("gap", stream,
    first, last)}, C{("refused", subject, text)}.
    """
    names: dict[int, str] = {}
    told: list[tuple[Any, ...]] = []
    for payload in frames(transport.value())[1:]:
        frame = decodeServerFrame(payload)
        if isinstance(frame, StreamStart):
            names[frame.number] = frame.name
            told.append(("stream", frame.name, frame.next))
        elif isinstance(frame, SMsg):
            told.append((names[frame.stream], frame.seq, frame.payload))
        elif isinstance(frame, SBatch):
            told.extend((names[frame.stream], seq, p) for seq, p in enumerate(frame.payloads, frame.first))
        elif isinstance(frame, SGap):
            told.append(("gap", names[frame.stream], frame.first, frame.last))
        elif isinstance(frame, Refused):
            told.append(("refused", frame.subject, frame.text))
        else:
            told.append(("other", frame))
    return told


class SeveralStreamsTests(SynchronousTestCase):
    """
    A C{seq} client of version 4 subscribes to names and patterns on one
    connection; its frames say their stream.
    """

    def test_twoNames(self) -> None:
        """
        Two streams by name: each is announced, then its messages come in
        order, labelled with its number.
        """
        daemon = StreamsDaemon()
        daemon.publish("prices", b"old")
        _, transport = daemon.connect(Sub(Start.NEWEST, "prices"), Sub(Start.NEWEST, "logs"))
        daemon.publish("prices", b"p1", b"p2")
        daemon.publish("logs", b"l1")
        daemon.publish("other", b"o1")
        self.assertEqual(
            heard(transport),
            [
                ("stream", "prices", 2),
                ("stream", "logs", 1),
                ("prices", 2, b"p1"),
                ("prices", 3, b"p2"),
                ("logs", 1, b"l1"),
            ],
        )

    def test_patternGetsLaterStreams(self) -> None:
        """
        A pattern subscription gets the matching streams there now, from
        now, and each made later from its first message; not others.
        """
        daemon = StreamsDaemon()
        daemon.publish("prices.eu", b"before")
        _, transport = daemon.connect(Sub(Start.NEWEST, "prices.*"))
        daemon.publish("prices.eu", b"eu")
        daemon.publish("prices.us", b"us")
        daemon.publish("prices.us.east", b"deeper")
        self.assertEqual(
            heard(transport),
            [
                ("stream", "prices.eu", 2),
                ("prices.eu", 2, b"eu"),
                ("stream", "prices.us", 1),
                ("prices.us", 1, b"us"),
            ],
        )

    def test_onceWhateverMatches(self) -> None:
        """
        A stream that several subscriptions match is sent once; it stops
        when the last of them is unsubscribed.
        """
        daemon = StreamsDaemon()
        protocol, transport = daemon.connect(
            Sub(Start.NEWEST, "a.b"), Sub(Start.NEWEST, "a.*"), Sub(Start.NEWEST, "a.>")
        )
        daemon.publish("a.b", b"1")
        protocol.dataReceived(framed(Unsub("a.*")) + framed(Unsub("a.b")))
        daemon.publish("a.b", b"2")
        protocol.dataReceived(framed(Unsub("a.>")))
        daemon.publish("a.b", b"3")
        self.assertEqual(heard(transport), [("stream", "a.b", 1), ("a.b", 1, b"1"), ("a.b", 2, b"2")])

    def test_resumePerStream(self) -> None:
        """
        A resumed pattern subscription resumes each stream it gives a
        position for, and sends the others from their oldest message.
        """
        daemon = StreamsDaemon()
        daemon.publish("s.a", b"a1", b"a2")
        daemon.publish("s.b", b"b1")
        daemon.publish("s.a", b"a3")
        epoch = daemon.streams.get("s.a").history.epoch  # type: ignore[union-attr]
        _, transport = daemon.connect(Sub(Start.RESUME, "s.*", positions=(Position("s.a", epoch, 2),)))
        self.assertEqual(
            heard(transport),
            [
                ("stream", "s.a", 3),
                ("s.a", 3, b"a3"),
                ("stream", "s.b", 1),
                ("s.b", 1, b"b1"),
            ],
        )

    def test_refusals(self) -> None:
        """
        A bad subject, or a stream past C{--max-streams}, is refused with
        a REFUSED that says why; the connection goes on.
        """
        daemon = StreamsDaemon(maxStreams=2)
        _, transport = daemon.connect(
            Sub(Start.NEWEST, "a..b"), Sub(Start.NEWEST, "x"), Sub(Start.NEWEST, "y")
        )
        daemon.publish("x", b"1")
        told = heard(transport)
        self.assertEqual(told[0][:2], ("refused", "a..b"))
        self.assertEqual(told[1:3], [("stream", "x", 1), ("refused", "y", told[2][2])])
        self.assertIn("--max-streams 2", told[2][2])
        self.assertEqual(told[3:], [("x", 1, b"1")])
        self.assertFalse(transport.disconnecting)

    def test_publishByName(self) -> None:
        """
        SPUB publishes to the stream it names, made if need be, and not
        back to its sender; others subscribed get it.
        """
        daemon = StreamsDaemon()
        sender, senderTransport = daemon.connect(Sub(Start.NEWEST, "chat.*"))
        _, otherTransport = daemon.connect(Sub(Start.NEWEST, "chat.*"))
        sender.dataReceived(framed(SPub("chat.room", b"hi")))
        self.assertEqual(heard(senderTransport), [("stream", "chat.room", 1)])
        self.assertEqual(heard(otherTransport), [("stream", "chat.room", 1), ("chat.room", 1, b"hi")])
        self.assertEqual(daemon.streams.get("chat.room").history.nextSequence, 2)  # type: ignore[union-attr]

    def test_publishRunsTogether(self) -> None:
        """
        SPUBs to one stream that come together are one entry, as PUBs are.
        """
        daemon = StreamsDaemon()
        sender, _ = daemon.connect()
        sender.dataReceived(b"".join(framed(SPub("x", b"%d" % i)) for i in range(5)) + framed(SPub("y", b"y")))
        self.assertEqual(len(daemon.streams.get("x").history), 1)  # type: ignore[union-attr, arg-type]
        self.assertEqual(daemon.streams.get("x").history.nextSequence, 6)  # type: ignore[union-attr]
        self.assertEqual(daemon.streams.get("y").history.nextSequence, 2)  # type: ignore[union-attr]

    def test_ownNotSentBackLater(self) -> None:
        """
        What a client publishes to a stream it is not subscribed to is not
        sent back to it when it subscribes to that stream later.
        """
        daemon = StreamsDaemon()
        sender, transport = daemon.connect()
        sender.dataReceived(framed(SPub("notes", b"mine")))
        daemon.publish("notes", b"theirs")
        sender.dataReceived(framed(Sub(Start.LAST, "notes", position=10)))
        self.assertEqual(heard(transport), [("stream", "notes", 1), ("notes", 2, b"theirs")])

    def test_oneStreamAheadRefused(self) -> None:
        """
        A resumed pattern subscription with one stream's position beyond
        its newest message is refused for that stream only: the pattern's
        other streams, and those made later, still come.
        """
        daemon = StreamsDaemon()
        daemon.publish("s.a", b"a1")
        daemon.publish("s.b", b"b1")
        epoch = daemon.streams.get("s.a").history.epoch  # type: ignore[union-attr]
        _, transport = daemon.connect(Sub(Start.RESUME, "s.*", positions=(Position("s.a", epoch, 9),)))
        daemon.publish("s.c", b"c1")
        told = heard(transport)
        self.assertEqual(told[0][:2], ("refused", "s.*"))
        self.assertIn("s.a after message 9", told[0][2])
        self.assertEqual(
            told[1:], [("stream", "s.b", 1), ("s.b", 1, b"b1"), ("stream", "s.c", 1), ("s.c", 1, b"c1")]
        )

    def test_slowConnectionFair(self) -> None:
        """
        A connection that stops taking data holds every stream at its
        position; when it takes more, each is sent from there, nothing lost
        or repeated.
        """
        daemon = StreamsDaemon()
        _, transport = daemon.connect(Sub(Start.NEWEST, "a"), Sub(Start.NEWEST, "b"))
        producer = transport.producer
        assert producer is not None
        producer.pauseProducing()
        for i in range(5):
            daemon.publish("a", b"a%d" % i)
            daemon.publish("b", b"b%d" % i)
        producer.resumeProducing()
        told = heard(transport)
        for name in ("a", "b"):
            self.assertEqual(
                [m for m in told if m[0] == name],
                [(name, i + 1, b"%s%d" % (name.encode(), i)) for i in range(5)],
            )


class FillingTransport(StringTransport):
    """
    A transport whose buffer is full (it pauses its producer) once it holds
    more than C{room} bytes.
    """

    room = 100_000

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.value()) > self.room:
            self.producer.pauseProducing()


class MuxTests(SynchronousTestCase):
    """
    The streams of one connection share it: a stream that stops (or the
    connection) never leaves the client inside a frame.
    """

    def connect(self, daemon: StreamsDaemon, *sent: Any) -> tuple[Any, FillingTransport]:
        protocol = daemon.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = FillingTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(framed(ClientHello(4, Start.NONE, bytes(8), 0)))
        for frame in sent:
            protocol.dataReceived(framed(frame))
        return protocol, transport

    def test_unsubscribeMidFrame(self) -> None:
        """
        A stream unsubscribed while its connection is full in the middle of
        one of its frames finishes that frame first; the others go on.
        """
        daemon = StreamsDaemon()
        protocol, transport = self.connect(daemon, Sub(Start.NEWEST, "big"), Sub(Start.NEWEST, "small"))
        daemon.publish("big", b"x" * 300_000)
        self.assertLess(len(transport.value()), 300_000)
        protocol.dataReceived(framed(Unsub("big")))
        transport.room = 10**9
        daemon.publish("small", b"s1")
        producer = transport.producer
        assert producer is not None
        producer.resumeProducing()
        told = heard(transport)
        self.assertEqual(told[:3], [("stream", "big", 1), ("stream", "small", 1), ("big", 1, b"x" * 300_000)])
        self.assertEqual(told[3:], [("small", 1, b"s1")])


class SocketMuxTests(SynchronousTestCase):
    """
    L{SocketMux} sends several streams straight to a socket that takes only
    part of what it is given: every frame whole, every stream in order,
    nothing lost or doubled, and a stream that stops mid-frame finishes it.
    """

    def setUp(self) -> None:
        self.transport, self.far, self.reactor = socketPair(self)
        self.mux = SocketMux(self.transport)
        self.streams = Streams(Stats(), Clock(), FlowControl())

    def subscribe(self, name: str) -> Cursor:
        hub = self.streams.open(name)
        cursor = Cursor(self.mux, hub, INT32, Owner())
        hub.subscribe(cursor)
        self.mux.add(cursor)
        return cursor

    def drain(self) -> list[bytes]:
        """
        The frames L{receive} reads.
        """
        return frames(self.receive())

    def receive(self) -> bytes:
        """
        Read the far end, playing the reactor (L{readAll}).
        """
        return readAll(self.far, self.transport, self.reactor, 1 << 20)

    def test_interleavedWhole(self) -> None:
        """
        Two streams published in turn, far more than the socket holds, all
        arrive whole and in order.
        """
        self.subscribe("a")
        self.subscribe("b")
        for i in range(200):
            self.streams.open("a").publish([b"a%d-" % i + b"x" * 700])
            self.streams.open("b").publish([b"b%d-" % i + b"y" * 300])
        got = self.drain()
        for name, size in ((b"a", 700), (b"b", 300)):
            mine = [m for m in got if m.startswith(name)]
            self.assertEqual(mine, [name + b"%d-" % i + (b"x" if name == b"a" else b"y") * size for i in range(200)])
        self.assertEqual(len(got), 400)

    def test_removedMidFrame(self) -> None:
        """
        A stream removed while the socket holds part of its frame finishes
        that frame before the other stream's next one.
        """
        big = self.subscribe("big")
        self.subscribe("small")
        self.streams.open("big").publish([b"z" * 200_000])
        self.mux.remove(big)
        self.streams.open("small").publish([b"after"])
        self.streams.open("big").publish([b"not sent"])
        self.assertEqual(self.drain(), [b"z" * 200_000, b"after"])

    def test_waitsForTransport(self) -> None:
        """
        A mux made after the protocol wrote to the transport itself (an
        HTTP answer, bigger than the socket takes at once) sends nothing
        before the transport has sent that, then its own frames and the
        streams in order.
        """
        self.transport.unregisterProducer()
        answer = b"HTTP/1.1 101 Switching Protocols\r\n" + b"h" * 20_000 + b"\r\n\r\n"
        self.transport.write(answer)
        self.mux = SocketMux(self.transport, afterTransport=True)
        self.mux.sendPrivate(INT32.encode(b"hello"))
        self.subscribe("a")
        for i in range(20):
            self.streams.open("a").publish([b"a%d-" % i + b"x" * 5000])
        self.assertRaises(BlockingIOError, self.far.recv, 10)
        received = self.receive()
        self.assertEqual(received[: len(answer)], answer)
        self.assertEqual(
            frames(received[len(answer) :]), [b"hello"] + [b"a%d-" % i + b"x" * 5000 for i in range(20)]
        )


NAMES = ["a", "a.x", "a.y", "b.x", "b.y.z"]
SUBJECTS = ["a", "a.*", "*.x", "b.>", ">"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(NAMES), st.integers(1, 3)),
        st.tuples(
            st.just("connect"), st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=3, unique=True)
        ),
        st.tuples(st.just("cut"), st.integers(0, 3)),
        st.tuples(st.just("resume"), st.integers(0, 3)),
        st.tuples(st.just("spub"), st.sampled_from(NAMES)),
    ),
    max_size=40,
)


class ModelTests(SynchronousTestCase):
    """
    Any interleaving of streams made, subscriptions by name and pattern,
    publishes and resumes gives each subscriber every matching stream's
    messages once, in order per stream: the real client against the real
    server, in memory.
    """

    @settings(max_examples=500, deadline=None)
    @given(operations)
    def test_model(self, ops: list[tuple[Any, ...]]) -> None:
        daemon = StreamsDaemon()
        published: dict[str, list[bytes]] = {}
        clients: list[dict[str, Any]] = []
        publisher: list[Any] = []
        counter = 0

        def connect(client: dict[str, Any]) -> None:
            c, s, pump = connectedServerAndClient(
                lambda: daemon.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)),
                lambda: client["factory"].buildProtocol(None),
                clock=daemon.clock,
            )
            client["pump"], client["protocol"] = pump, c
            pump.flush()

        def flush() -> None:
            for client in clients:
                if client["pump"] is not None:
                    client["pump"].flush()
            if publisher:
                publisher[0].flush()

        for op in ops:
            if op[0] == "publish":
                _, name, count = op
                messages = [b"%s-%d" % (name.encode(), counter + i) for i in range(count)]
                counter += count
                daemon.publish(name, *messages)
                published.setdefault(name, []).extend(messages)
            elif op[0] == "spub":
                if not publisher:
                    quiet = SeqClientFactory(
                        lambda *a: None, lambda *a: None, lambda bye: None, streams=("zz",)
                    )
                    c, s, pump = connectedServerAndClient(
                        lambda: daemon.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2)),
                        partial(quiet.buildProtocol, None),
                        clock=daemon.clock,
                    )
                    publisher.extend([pump, c])
                    pump.flush()
                message = b"%s-%d" % (op[1].encode(), counter)
                counter += 1
                publisher[1].transport.write(framed(SPub(op[1], message)))
                publisher[0].flush()
                published.setdefault(op[1], []).extend([message])
            elif op[0] == "connect":
                received: dict[str, list[tuple[int, bytes]]] = {}
                client = {
                    "subjects": op[1],
                    "received": received,
                    # Where each stream stood when this client subscribed.
                    "from": {name: len(messages) for name, messages in published.items()},
                }
                client["factory"] = SeqClientFactory(
                    lambda name, seq, payload, received=received: received.setdefault(name, []).append(
                        (seq, payload)
                    ),
                    lambda *gap: self.fail(f"gap {gap}"),
                    lambda bye: self.fail(f"bye {bye}"),
                    streams=tuple(op[1]),
                )
                clients.append(client)
                connect(client)
            elif op[0] == "cut" and op[1] < len(clients) and clients[op[1]]["pump"] is not None:
                client = clients[op[1]]
                client["protocol"].transport.loseConnection()
                client["pump"].flush()
                client["pump"] = None
            elif op[0] == "resume" and op[1] < len(clients) and clients[op[1]]["pump"] is None:
                connect(clients[op[1]])
            flush()

        for client in clients:
            if client["pump"] is None:
                connect(client)
        flush()
        for client in clients:
            for name, messages in published.items():
                if not any(matches(subject, name) for subject in client["subjects"]):
                    self.assertNotIn(name, client["received"])
                    continue
                expected = messages[client["from"].get(name, 0) :]
                got = client["received"].get(name, [])
                self.assertEqual([payload for _, payload in got], expected, name)
                self.assertEqual([seq for seq, _ in got], sorted({seq for seq, _ in got}))
