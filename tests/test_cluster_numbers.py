"""
Unit tests of what JetStream mode builds on, without NATS: a history
numbered by the cluster's stream, the hub handing what is published here to
the stream instead of the log, GAPs for messages a node never got, and the
C{--cluster-retention} syntax.  (The integration tests in
L{tests.integration.test_cluster_jetstream} use a real nats-server.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from streamd.cluster.jetstream import epochOf
from streamd.config import ClusterConfig, ConfigError, StreamsConfig, parseRetention
from streamd.fanout.history import COUNT, FIRST, SENDER, History, lastOf
from streamd.fanout.hub import Hub, Sender
from streamd.fanout.streams import Streams
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, Payload
from streamd.seqframing import ClientHello, Gap, GapReason, Msg, ServerHello, Start
from streamd.stats import Stats

from .support import frames
from .test_seqserver import EPOCH, SeqDaemon, received

VERSION = 1
"""
The seq version these clients speak: 1, so each message is a MSG frame and
the tests read as the numbering they check.
"""


class _Sender:
    serial = 777

    def published(self, entry: object) -> None:
        pass


class NumberedHistoryTests(SynchronousTestCase):
    """
    L{History.append} with the numbers of a cluster's stream.
    """

    def test_givenFirst(self) -> None:
        """
        Messages appended with a first sequence number keep it; a later one
        may leave a hole; the next number follows the last message.
        """
        history = History()
        a = history.append(INT32.encodeMany([b"a", b"b"]), INT32, 2, first=5)
        b = history.append(INT32.encode(b"c"), INT32, 1, first=9)
        self.assertEqual((a[FIRST], lastOf(a), b[FIRST], history.nextSequence), (5, 6, 9, 10))
        self.assertEqual(history.find(7), 1)

    def test_olderRefused(self) -> None:
        """
        A message older than the next number is refused, not renumbered.
        """
        history = History()
        history.append(INT32.encode(b"a"), INT32, 1, first=3)
        self.assertRaises(ValueError, history.append, INT32.encode(b"b"), INT32, 1, first=3)

    def test_adoptEpoch(self) -> None:
        """
        An empty log takes the cluster's epoch and still knows its own former
        one as the same numbering; one that holds messages cannot.
        """
        history = History(b"own-epoc")
        history.adoptEpoch(b"clusterE")
        self.assertEqual(history.epoch, b"clusterE")
        self.assertTrue(history.ownsEpoch(b"own-epoc"))
        self.assertTrue(history.ownsEpoch(b"clusterE"))
        self.assertFalse(history.ownsEpoch(b"elsewher"))
        history.append(INT32.encode(b"a"), INT32, 1, first=1)
        self.assertRaises(AssertionError, history.adoptEpoch, b"another!")

    def test_epochOf(self) -> None:
        """
        The cluster's epoch is the same for the same stream, and another for
        a stream of the same name made anew.
        """
        self.assertEqual(epochOf("s", "2026-01-01T00:00:00"), epochOf("s", "2026-01-01T00:00:00"))
        self.assertNotEqual(epochOf("s", "2026-01-01T00:00:00"), epochOf("s", "2026-01-01T00:00:01"))
        self.assertEqual(len(epochOf("s", "")), 8)


class UpstreamTests(SynchronousTestCase):
    """
    L{Hub.upstream}: what is published here goes to the stream first.
    """

    def test_handedUpstream(self) -> None:
        """
        With an upstream, a publish is handed to it with its sender and not
        appended; a publish numbered by the stream is appended.
        """
        hub = Hub(Stats(), Clock())
        handed: list[tuple[list[Payload], Sender | None]] = []
        hub.upstream = lambda payloads, sender: handed.append((list(payloads), sender))
        sender = _Sender()
        hub.publish([b"a"], sender=sender)
        hub.publish([b"b"])
        self.assertEqual(handed, [([b"a"], sender), ([b"b"], None)])
        self.assertEqual(hub.history.nextSequence, 1)
        hub.publish([b"a", b"b"], sender=sender, first=1)
        self.assertEqual((hub.history[0][FIRST], hub.history[0][SENDER]), (1, sender.serial))


class StreamGapTests(SynchronousTestCase):
    """
    Messages of the cluster's stream that never reached this node are a
    GAP for seq clients.
    """

    def test_holeIsAGap(self) -> None:
        """
        A message numbered past the next number sends live seq clients a
        GAP (reason CLUSTER) for the hole, then the message.
        """
        daemon = SeqDaemon()
        daemon.hub.publish([b"m1"], first=1)
        _, transport = daemon.connect(ClientHello(VERSION, Start.NEWEST, bytes(8), 0))
        self.assertEqual(received(transport), [ServerHello(VERSION, EPOCH, 1, 1, 0, DEFAULT_MAX_MESSAGE_SIZE)])
        daemon.hub.publish([b"m5"], first=5)
        self.assertEqual(received(transport), [Gap(2, 4, GapReason.CLUSTER), Msg(5, b"m5")])

    def test_unknownGap(self) -> None:
        """
        A gap of unknown size (core mode, after NATS was lost) covers no
        number: last is first - 1.
        """
        daemon = SeqDaemon()
        daemon.hub.publish([b"m1"])
        _, transport = daemon.connect(ClientHello(VERSION, Start.NEWEST, bytes(8), 0))
        received(transport)
        daemon.hub.gap(2, 1)
        daemon.hub.publish([b"m2"])
        self.assertEqual(received(transport), [Gap(2, 1, GapReason.CLUSTER), Msg(2, b"m2")])

    def test_resumeFromFormerEpoch(self) -> None:
        """
        A client that resumes with the epoch the node had before it took the
        cluster's (it connected before the node joined) resumes where it was.
        """
        daemon = SeqDaemon()
        daemon.hub.history.adoptEpoch(b"clusterE")
        daemon.hub.publish([b"m1", b"m2", b"m3"], first=1)
        _, transport = daemon.connect(ClientHello(VERSION, Start.RESUME, EPOCH, 2))
        self.assertEqual(received(transport), [ServerHello(VERSION, b"clusterE", 1, 3, 0, DEFAULT_MAX_MESSAGE_SIZE), Msg(3, b"m3")])


class RetentionTests(SynchronousTestCase):
    """
    C{--cluster-retention}: a size, an age, or both.
    """

    def test_parsed(self) -> None:
        """
        Sizes and ages in their units, alone or together, in any order.
        """
        self.assertEqual(parseRetention("64MiB"), (64 << 20, None))
        self.assertEqual(parseRetention("1h"), (None, 3600.0))
        self.assertEqual(parseRetention("30m, 1GiB"), (1 << 30, 1800.0))
        self.assertEqual(parseRetention("1.5KiB"), (1536, None))

    def test_refused(self) -> None:
        """
        Anything else is refused with one line that shows the syntax.
        """
        for text in ("64", "64MB", "1h,2h", "", "0s", "1GiB,2GiB"):
            e = self.assertRaises(ConfigError, parseRetention, text)
            self.assertNotIn("\n", str(e))
            self.assertIn("--cluster-retention", str(e))

    def test_streamName(self) -> None:
        """
        The stream is named after the subject, without its dots.
        """
        self.assertEqual(ClusterConfig(("nats://h:1",), subject="a.b").streamName, "streamd-a_b")


class _Immediate:
    """
    A loop for the link whose calls across threads happen at once.
    """

    def callInReactor(self, f: Callable[..., object], *args: object) -> None:
        f(*args)

    callInLoop = callInReactor


NODE = "0123456789abcdef"
OTHER = "fedcba9876543210"


class _Numbers:
    """
    A JetStream API whose numbers stream holds, per stream, the first
    number and count of its last batch.
    """

    def __init__(self, last: dict[str, tuple[int, int]]) -> None:
        self.last = last
        self.asked: list[str] = []

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        from nats.js.errors import NotFoundError

        assert stream == "streamd-streamd-numbers"
        self.asked.append(subject)
        name = subject.partition(".")[2]
        if name not in self.last:
            raise NotFoundError(code=404, err_code=10037, description="no message found")
        first, count = self.last[name]
        return type("Msg", (), {"headers": {"Streamd-First": str(first), "Streamd-Count": str(count)}})


class JetStreamLinkTests(SynchronousTestCase):
    """
    What L{JetStreamLink} does with what is published here and with what
    the stream delivers, without NATS.
    """

    def setUp(self) -> None:
        from streamd.cluster.jetstream import JetStreamLink

        self.streams = Streams(Stats(), Clock(), config=self.streamsConfig)
        self.hub = self.streams.default
        config = ClusterConfig(("nats://127.0.0.1:4222",), history="jetstream")
        self.link = JetStreamLink(self.streams, Clock(), config, 1024, pendingBytes=10)
        self.link.node = NODE
        self.link._loop = _Immediate()  # type: ignore[assignment]
        # What startService does.
        self.link.routes.attach(self.link.attachStream)

    streamsConfig = StreamsConfig()

    def deliver(
        self, first: int, payloads: list[bytes], node: str = OTHER, token: str = "1", stream: str = "default"
    ) -> None:
        """
        The stream delivers C{payloads} of C{stream} numbered from C{first},
        published by C{node}.
        """
        from streamd.cluster.jetstream import FIRST as FIRST_HEADER
        from streamd.cluster.jetstream import MSG_ID

        headers = {MSG_ID: f"{node}-{token}", FIRST_HEADER: str(first)}
        self.link._accept(f"streamd.{stream}", INT32.encodeMany(payloads), headers)

    def held(self, hub: Hub | None = None) -> list[tuple[int, int, int]]:
        """
        The first number, count and sender of each entry of the history of
        C{hub} (C{default}'s by default).
        """
        history = (hub or self.hub).history
        return [(history[i][FIRST], history[i][COUNT], history[i][SENDER]) for i in range(history.start, history.end)]

    def test_queuedNotDelivered(self) -> None:
        """
        What is published here waits for the stream, framed, with its
        publisher, and is not in the history yet.
        """
        sender = _Sender()
        self.hub.publish([b"a", memoryview(b"bc")], sender=sender)
        self.assertEqual(self.link._queued, [("default", INT32.encodeMany([b"a", b"bc"]), 2, sender)])
        self.assertEqual(self.hub.history.nextSequence, 1)

    def test_queueBounded(self) -> None:
        """
        Past C{pendingBytes} waiting, what is published here is dropped and
        counted.
        """
        self.hub.publish([b"x" * 8])
        self.hub.publish([b"y" * 8])
        self.assertEqual((len(self.link._queued), self.link.counters.dropped), (1, 1))

    def test_batched(self) -> None:
        """
        What waits goes into batches that fit a NATS message, in order, each
        run of one publisher's messages kept with it; a message too large
        for any is dropped and counted.
        """
        sender = _Sender()
        self.link.pendingBytes = 10_000
        self.hub.publish([b"a", b"b"], sender=sender)
        self.hub.publish([b"c"])
        self.hub.publish([b"x" * 200])
        self.hub.publish([b"d" * 50, b"e" * 50])
        self.link._take(120)
        batches = [(frames(b.data), b.runs) for b in self.link._pending]
        self.assertEqual(
            batches,
            [([b"a", b"b", b"c"], [(2, sender), (1, None)]), ([b"d" * 50, b"e" * 50], [(2, None)])],
        )
        self.assertEqual(self.link.counters.dropped, 1)

    def test_backFromTheStream(self) -> None:
        """
        Batches read from the stream enter the history under their numbers,
        in runs of one sender: this node's own with their publisher as
        sender (it does not get them back), the others' with the link; this
        node's batch is done.
        """
        sender = _Sender()
        self.link.pendingBytes = 10_000
        self.hub.publish([b"mine"], sender=sender)
        self.link._take(1000)
        (batch,) = self.link._pending
        batch.attempts.append(f"{NODE}-mine")
        self.link._attempts[f"{NODE}-mine"] = batch
        self.deliver(7, [b"theirs"])
        self.deliver(8, [b"mine"], NODE, "mine")
        self.deliver(9, [b"theirs", b"too"])
        self.assertEqual(
            self.held(), [(7, 1, self.link.serial), (8, 1, sender.serial), (9, 2, self.link.serial)]
        )
        self.assertEqual((self.hub.history.nextSequence, len(self.link._pending), self.link._attempts), (11, 0, {}))
        self.assertEqual((self.link.counters.sent, self.link.counters.received), (1, 4))

    def test_chained(self) -> None:
        """
        The first batch sent follows the last stream message read
        (C{Nats-Expected-Last-Sequence}), each next one the one before
        (C{Nats-Expected-Last-Msg-Id}), numbered on from it; a batch under
        C{FULL} waits while another is in flight.  A refusal breaks the
        chain: once the stream is read through, what did not come back is
        sent again, first after the last message read, with new ids.
        """
        import asyncio

        from streamd.cluster import jetstream

        class Connection:
            def __init__(self) -> None:
                self.sent: list[dict[str, str]] = []

            async def publish(self, subject: str, data: bytes, reply: str, headers: dict[str, str]) -> None:
                self.sent.append(headers)

        class Stream:
            async def stream_info(self, name: str) -> Any:
                state = type("State", (), {"first_seq": 1, "last_seq": 7})
                return type("Info", (), {"state": state})

        link, nc = self.link, Connection()
        link.pendingBytes = 1_000_000
        link.expected, link.numbers = 6, {"default": 40}
        for n in range(3):
            self.hub.publish([b"x" * 70_000, b"%d" % n])
        self.hub.publish([b"small"])
        link._take(80_000)

        async def run(step: Any) -> None:
            link._progress = asyncio.Event()
            await step

        asyncio.run(run(link._send(nc, "inbox")))
        heads = [(h.get(jetstream.EXPECTED_LAST_SEQUENCE), h.get(jetstream.EXPECTED_LAST_ID), h[jetstream.FIRST]) for h in nc.sent]
        ids = [h[jetstream.MSG_ID] for h in nc.sent]
        self.assertEqual(heads, [("5", None, "40"), (None, ids[0], "42"), (None, ids[1], "44")])
        self.assertTrue(all(i.startswith(NODE + "-") for i in ids) and len(set(ids)) == 3)
        # The stream refuses the second (another node got in first).
        for attempt, answer in ((ids[0], b'{"stream":"s","seq":6}'), (ids[1], b'{"error":{"err_code":10071}}')):
            asyncio.run(run(link._acked(type("Msg", (), {"subject": f"inbox.{attempt}", "data": answer}))))
        self.assertTrue(link._broken)
        self.deliver(40, [b"x" * 70_000, b"0"], NODE, ids[0].partition("-")[2])
        self.deliver(42, [b"theirs"], OTHER)
        link._js = Stream()
        link.expected = 8
        asyncio.run(run(link._mend()))
        nc.sent.clear()
        asyncio.run(run(link._send(nc, "inbox")))
        self.assertEqual(
            [(h.get(jetstream.EXPECTED_LAST_SEQUENCE), h.get(jetstream.EXPECTED_LAST_ID), h[jetstream.FIRST]) for h in nc.sent],
            [("7", None, "43"), (None, nc.sent[0][jetstream.MSG_ID], "45")],
        )
        self.assertFalse({h[jetstream.MSG_ID] for h in nc.sent} & set(ids))

    def test_checks(self) -> None:
        """
        A batch numbered behind the stream, one without streamd's headers or
        whole frames, one in this node's name that it did not send, and one
        holding a message over C{--max-message-size} are dropped and
        counted; the last two keep their numbers on every node, so the next
        batch follows them (a gap here).
        """
        from streamd.cluster.guard import Drop

        self.deliver(1, [b"one"])
        self.deliver(1, [b"again"])
        self.link._accept("streamd.default", INT32.encode(b"x"), {})
        self.link._accept("streamd.default", INT32.encode(b"x"), {"Nats-Msg-Id": f"{OTHER}-3", "Streamd-First": "\u00b2"})
        self.link._accept("streamd.default", b"\x00\x00\x00\x09cut", {"Nats-Msg-Id": f"{OTHER}-2", "Streamd-First": "2"})
        self.deliver(2, [b"forged"], NODE, "never")
        self.deliver(3, [b"x" * 2000])
        self.deliver(4, [b"four"])
        self.assertEqual([(f, c) for f, c, _ in self.held()], [(1, 1), (4, 1)])
        self.assertEqual(
            self.link.dropped.counts,
            {Drop.STALE: 1, Drop.BAD_HEADER: 2, Drop.NOT_FRAMES: 1, Drop.FORGED: 1, Drop.TOO_LARGE: 1},
        )

    def test_unsigned(self) -> None:
        """
        With a key, a batch not signed with it is dropped, one signed is
        taken; the signed one copied to another stream's subject is dropped
        there.
        """
        from streamd.cluster.guard import Drop, Signer
        from streamd.cluster.wire import SIGNATURE

        signer = self.link.signer = Signer(b"key")
        self.deliver(1, [b"unsigned"])
        data = INT32.encode(b"signed")
        msgId = f"{OTHER}-2"
        signature = signer.sign(data, msgId, "1", "streamd.default")
        headers = {"Nats-Msg-Id": msgId, "Streamd-First": "1", SIGNATURE: signature}
        self.link._accept("streamd.default", data, headers)
        self.link._accept("streamd.other", data, headers)
        self.assertEqual((self.held(), self.link.dropped.counts), ([(1, 1, self.link.serial)], {Drop.UNSIGNED: 2}))
        self.assertEqual((self.streams.get("other"), self.link.numbers), (None, {"default": 2}))

    def test_numberedPerStream(self) -> None:
        """
        Each stream has its own numbers: a batch is taken if numbered at or
        after its stream's next, dropped as stale if behind it, whatever
        the other streams' numbers; it enters its stream, made here if need
        be, under its numbers.
        """
        from streamd.cluster.guard import Drop

        self.deliver(1, [b"d1", b"d2"])
        self.deliver(1, [b"p1"], stream="prices")
        self.deliver(3, [b"d3"])
        self.deliver(1, [b"copy"], stream="prices")
        self.deliver(5, [b"p5"], stream="prices")
        self.deliver(1, [b"n1"], stream="news.eu")
        prices, news = self.streams.get("prices"), self.streams.get("news.eu")
        assert prices is not None and news is not None
        serial = self.link.serial
        self.assertEqual(
            [self.held(hub) for hub in (self.hub, prices, news)],
            [[(1, 2, serial), (3, 1, serial)], [(1, 1, serial), (5, 1, serial)], [(1, 1, serial)]],
        )
        self.assertEqual(self.link.numbers, {"default": 4, "prices": 6, "news.eu": 2})
        self.assertEqual(self.link.dropped.counts, {Drop.STALE: 1})

    def test_badStreamName(self) -> None:
        """
        A batch on a subject that names no stream is dropped, and numbers
        nothing.
        """
        from streamd.cluster.guard import Drop

        self.deliver(1, [b"x"], stream="b@d")
        self.assertEqual((self.link.numbers, self.link.dropped.counts), ({}, {Drop.NO_STREAM: 1}))

    def test_epochPerStream(self) -> None:
        """
        Once the link knows the cluster's epoch, every stream takes its own
        epoch of it, the streams made later too: the same on every node.
        """
        from streamd.cluster.jetstream import streamEpoch

        prices = self.streams.open("prices")
        self.link._adopt(b"clusterE", "127.0.0.1:4222", 1 << 20)
        news = self.streams.open("news")
        self.assertEqual(
            [hub.history.epoch for hub in (self.hub, prices, news)],
            [streamEpoch(b"clusterE", name) for name in ("default", "prices", "news")],
        )
        self.assertEqual(len({hub.history.epoch for hub in (self.hub, prices, news)}), 3)

    def test_awaitingEpoch(self) -> None:
        """
        Until the link knows the cluster's epoch, every stream awaits it
        (a resume is then not judged a restart); from then on, none does.
        """
        prices = self.streams.open("prices")
        self.assertEqual([hub.history.awaitingEpoch for hub in (self.hub, prices)], [True, True])
        self.link._adopt(b"clusterE", "127.0.0.1:4222", 1 << 20)
        news = self.streams.open("news")
        self.assertEqual([hub.history.awaitingEpoch for hub in (self.hub, prices, news)], [False] * 3)

    def test_batchedPerStream(self) -> None:
        """
        What several streams published meanwhile goes into batches of one
        stream each, each stream's in its order.
        """
        self.link.pendingBytes = 10_000
        prices = self.streams.open("prices")
        self.hub.publish([b"d1"])
        prices.publish([b"p1"])
        self.hub.publish([b"d2", b"d3"])
        prices.publish([b"p2"])
        self.link._take(1000)
        self.assertEqual(
            [(b.stream, frames(b.data)) for b in self.link._pending],
            [("default", [b"d1", b"d2", b"d3"]), ("prices", [b"p1", b"p2"])],
        )

    def test_chainedPerStream(self) -> None:
        """
        One chain orders the batches of every stream, each numbered after
        what the stream holds and the chain's batches of it before; a small
        batch waits while one of its stream is in flight, and one of a
        stream this node has read nothing of waits until the numbers stream
        says where that stream is; the batches of other streams go past.
        """
        import asyncio

        from streamd.cluster import jetstream

        class Connection:
            def __init__(self) -> None:
                self.sent: list[tuple[str, dict[str, str], list[bytes]]] = []

            async def publish(self, subject: str, data: bytes, reply: str, headers: dict[str, str]) -> None:
                self.sent.append((subject, headers, frames(data)))

        link, nc = self.link, Connection()
        link._js = _Numbers({"news": (12, 3)})
        link.pendingBytes = 1_000_000
        link.expected, link.numbers = 9, {"default": 40, "prices": 7}
        prices = self.streams.open("prices")
        self.hub.publish([b"x" * 70_000])
        prices.publish([b"p1"])
        self.hub.publish([b"small"])
        self.streams.open("news").publish([b"n1", b"n2"])
        # Room for the large message only: the small one of default starts
        # another batch.
        link._take(70_005)
        asyncio.run(link._send(nc, "inbox"))

        def sent() -> list[tuple[str, str | None, str | None, str, str]]:
            return [
                (
                    subject,
                    h.get(jetstream.EXPECTED_LAST_SEQUENCE),
                    h.get(jetstream.EXPECTED_LAST_ID),
                    h[jetstream.FIRST],
                    h[jetstream.COUNT],
                )
                for subject, h, _ in nc.sent
            ]

        ids = [h[jetstream.MSG_ID] for _, h, _ in nc.sent]
        self.assertEqual(sent(), [("streamd.default", "8", None, "40", "1"), ("streamd.prices", None, ids[0], "7", "1")])
        # The small batch of default waits for its stream's first, news for
        # its numbers: the last of its batches that entered the stream
        # held 12 to 14.
        self.assertEqual([b.stream for b in link._pending], ["default", "prices", "default", "news"])
        asyncio.run(link._lookUp())
        self.assertEqual(link._js.asked, ["streamd-numbers.news"])
        nc.sent.clear()
        asyncio.run(link._send(nc, "inbox"))
        self.assertEqual(sent(), [("streamd.news", None, ids[1], "15", "2")])
        ids.append(nc.sent[0][1][jetstream.MSG_ID])
        self.deliver(40, [b"x" * 70_000], NODE, ids[0].partition("-")[2])
        nc.sent.clear()
        asyncio.run(link._send(nc, "inbox"))
        self.assertEqual(
            [(subject, h.get(jetstream.EXPECTED_LAST_ID), h[jetstream.FIRST], f) for subject, h, f in nc.sent],
            [("streamd.default", ids[2], "41", [b"small"])],
        )

    def test_lookUp(self) -> None:
        """
        The numbers stream's last headers of a stream give its next number;
        a stream it holds nothing of (never published) starts at 1; one that
        becomes known by reading meanwhile is numbered as read.
        """
        import asyncio

        link = self.link
        link._js = _Numbers({"prices": (57, 2)})
        link.pendingBytes = 1_000_000
        for name in ("prices", "news", "read"):
            self.streams.open(name).publish([b"x"])
        link._take(1000)
        self.deliver(9, [b"r9"], stream="read")
        asyncio.run(link._lookUp())
        self.assertEqual(link._looked, {"prices": 59, "news": 1})
        self.assertEqual(link._js.asked, ["streamd-numbers.prices", "streamd-numbers.news"])

    def test_streamCannotBeMade(self) -> None:
        """
        A batch of a stream this node may not make keeps its numbers (the
        other nodes deliver it) and is dropped here, counted.
        """
        from streamd.cluster.guard import Drop

        self.streams = Streams(Stats(), Clock(), config=StreamsConfig(declaredOnly=True))
        self.link.streams = self.link.routes.streams = self.streams
        self.deliver(1, [b"o1"], stream="other")
        self.deliver(2, [b"o2"], stream="other")
        self.assertEqual(self.streams.get("other"), None)
        self.assertEqual((self.link.numbers, self.link.dropped.counts), ({"other": 3}, {Drop.NO_STREAM: 2}))


class ResumeInAHoleTests(SynchronousTestCase):
    """
    A client resuming at a position inside a hole of the stream's numbers.
    """

    def test_gapThenTheRest(self) -> None:
        """
        The client is told of the messages of the hole it will not get
        (GAP reason CLUSTER), then sent the messages after it.
        """
        daemon = SeqDaemon()
        daemon.hub.publish([b"m1", b"m2"], first=1)
        daemon.hub.publish([b"m6", b"m7"], first=6)
        _, transport = daemon.connect(ClientHello(VERSION, Start.RESUME, EPOCH, 3))
        self.assertEqual(
            received(transport),
            [ServerHello(VERSION, EPOCH, 1, 7, 0, DEFAULT_MAX_MESSAGE_SIZE), Gap(4, 5, GapReason.CLUSTER), Msg(6, b"m6"), Msg(7, b"m7")],
        )

    def test_noHoleNoGap(self) -> None:
        """
        Resuming in the middle of an entry, with no hole, sends the rest of
        that entry and no GAP.
        """
        daemon = SeqDaemon()
        daemon.hub.publish([b"m1", b"m2"], first=1)
        daemon.hub.publish([b"m6", b"m7"], first=6)
        _, transport = daemon.connect(ClientHello(VERSION, Start.RESUME, EPOCH, 6))
        self.assertEqual(received(transport), [ServerHello(VERSION, EPOCH, 1, 7, 0, DEFAULT_MAX_MESSAGE_SIZE), Msg(7, b"m7")])
