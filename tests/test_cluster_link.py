"""
Unit tests of the hub's outbound hook, of what L{ClusterLink} sends and
receives for each stream, and of how the links log failed attempts, without
NATS (the integration tests in L{tests.integration.test_cluster} use a real
nats-server).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.cluster.guard import Drop, Signer
from streamd.cluster.jetstream import JetStreamLink
from streamd.cluster.link import ClusterLink
from streamd.cluster.wire import NODE, Packer
from streamd.config import ClusterConfig, StreamsConfig
from streamd.fanout.history import COUNT, FIRST, SENDER, Entry
from streamd.fanout.hub import Hub
from streamd.fanout.streams import Streams
from streamd.framing import INT32
from streamd.stats import Stats

from .support import frames

CONFIG = ClusterConfig(("nats://127.0.0.1:4222",))
NODE_ID = "0123456789abcdef"


def coreLink(streams: Streams) -> ClusterLink:
    """
    A core link to C{streams} on a L{Clock}, hooked to every stream as
    C{startService} hooks it, without NATS.
    """
    from .test_cluster_numbers import _Immediate

    link = ClusterLink(streams, Clock(), CONFIG, 1024)
    link._loop = _Immediate()  # type: ignore[assignment]
    link.routes.attach(link.attachStream)
    return link


def held(hub: Hub) -> list[tuple[list[bytes], int]]:
    """
    The payloads and sender of each entry of C{hub}'s history.
    """
    history = hub.history
    return [
        ([bytes(p) for p in history.payloads(history[i])], history[i][SENDER])
        for i in range(history.start, history.end)
    ]


class _Sender:
    """
    A publisher, as the hub knows one: by its serial number.
    """

    serial = 12345

    def published(self, entry: object) -> None:
        pass


class OutboundHookTests(SynchronousTestCase):
    """
    L{Hub.outbound} sees every entry published, once.
    """

    def test_everyEntryOnce(self) -> None:
        """
        Each publish, by a source or any sender, calls the hook once with
        its entry.
        """
        hub = Hub(Stats(), Clock())
        seen: list[Entry] = []
        hub.outbound = seen.append
        sender = _Sender()
        hub.publish([b"a", b"b"])
        hub.publish([b"c"], sender=sender)
        self.assertEqual([(e[FIRST], e[COUNT], e[SENDER]) for e in seen], [(1, 2, 0), (3, 1, sender.serial)])


class SendTests(SynchronousTestCase):
    """
    What the link queues for NATS.
    """

    def setUp(self) -> None:
        self.streams = Streams(Stats(), Clock())
        self.hub = self.streams.default
        self.link = coreLink(self.streams)

    def test_eachStreamOnItsSubject(self) -> None:
        """
        A batch goes to its stream's subject, C{PREFIX.NAME}; a stream made
        after the link started is sent too.
        """
        self.link.connected = True
        self.hub.publish([b"a"])
        self.streams.open("prices.eu").publish([b"b", b"c"])
        self.assertEqual(
            [(subject, frames(data)) for subject, data in self.link._out],
            [("streamd.default", [b"a"]), ("streamd.prices.eu", [b"b", b"c"])],
        )
        self.assertEqual(self.link._outFrames, 3)

    def test_detached(self) -> None:
        """
        Once the link lets the streams go, neither they nor the streams
        made after are sent.
        """
        self.link.connected = True
        self.link.routes.detach()
        for hub in self.streams:
            self.link.detachStream(hub)
        self.hub.publish([b"a"])
        self.streams.open("later").publish([b"b"])
        self.assertEqual(self.link._out, [])

    def test_notFromTheCluster(self) -> None:
        """
        Batches the link itself published (other nodes' messages) are not
        sent back out.
        """
        self.link.connected = True
        self.hub.publish([b"theirs"], INT32.encode(b"theirs"), INT32, sender=self.link)
        self.assertEqual(self.link._out, [])

    def test_droppedWhileCutOff(self) -> None:
        """
        While the link is not on NATS, local batches are counted as dropped
        for the cluster (local clients still get them).
        """
        self.hub.publish([b"a", b"b"])
        self.assertEqual((self.link._out, self.link.counters.dropped), ([], 2))


class ReceiveTests(SynchronousTestCase):
    """
    What the link does with what NATS delivers: each message into the
    stream its subject names, made if need be.
    """

    def link(self, config: StreamsConfig = StreamsConfig()) -> ClusterLink:
        self.streams = Streams(Stats(), Clock(), config=config)
        return coreLink(self.streams)

    def deliver(self, link: ClusterLink, *messages: tuple[str, list[bytes]]) -> None:
        """
        NATS delivers C{messages} (a subject and payloads each) in one go.
        """
        for subject, payloads in messages:
            link._in.append((subject, INT32.encodeMany(payloads), None))
        link._publishReceived()

    def test_intoItsStream(self) -> None:
        """
        What NATS delivered in one go is published once per stream, in the
        order of its stream, with the link as sender; a stream this node
        did not have is made.
        """
        link = self.link()
        prices = self.streams.open("prices")
        self.deliver(
            link,
            ("streamd.default", [b"d1"]),
            ("streamd.prices", [b"p1", b"p2"]),
            ("streamd.default", [b"d2"]),
            ("streamd.news.eu", [b"n1"]),
        )
        news = self.streams.get("news.eu")
        assert news is not None
        self.assertEqual(
            [held(hub) for hub in (self.streams.default, prices, news)],
            [[([b"d1", b"d2"], link.serial)], [([b"p1", b"p2"], link.serial)], [([b"n1"], link.serial)]],
        )
        self.assertEqual((link.counters.received, link.dropped.counts), (5, {}))

    def test_streamCannotBeMade(self) -> None:
        """
        A message for a stream that cannot be made here (only declared
        streams, or a name that is none) is dropped and counted; the others
        are delivered.
        """
        link = self.link(StreamsConfig(declaredOnly=True, declared=("prices",)))
        self.deliver(
            link,
            ("streamd.prices", [b"p1"]),
            ("streamd.other", [b"o1"]),
            ("streamd.other", [b"o2"]),
            ("streamd.b@d", [b"x"]),
        )
        self.assertEqual(held(self.streams.open("prices")), [([b"p1"], link.serial)])
        self.assertEqual(self.streams.get("other"), None)
        self.assertEqual(link.dropped.counts, {Drop.NO_STREAM: 3})

    def test_maxStreams(self) -> None:
        """
        A message for a new stream past C{--max-streams} is dropped and
        counted.
        """
        link = self.link(StreamsConfig(maxStreams=2))
        self.deliver(link, ("streamd.one", [b"1"]), ("streamd.two", [b"2"]))
        self.assertEqual((len(self.streams), link.dropped.counts), (2, {Drop.NO_STREAM: 1}))

    def test_signedForItsStream(self) -> None:
        """
        With a key, a node's signed message is delivered into its stream,
        and the same message replayed on another stream's subject is
        dropped as unsigned.
        """
        link = self.link()
        signer = link.signer = Signer(b"key")
        ((data, headers),) = Packer(NODE_ID, 1 << 20, signer).pack("streamd.prices", [INT32.encode(b"buy")])
        assert headers is not None and headers[NODE] == NODE_ID
        link._in += [("streamd.prices", data, headers), ("streamd.news", data, headers)]
        link._publishReceived()
        self.assertEqual(held(self.streams.open("prices")), [([b"buy"], link.serial)])
        self.assertEqual((self.streams.get("news"), link.dropped.counts), (None, {Drop.UNSIGNED: 1}))


class CoreGapTests(SynchronousTestCase):
    """
    Back on NATS in core mode, seq clients hear of the gap.
    """

    def test_gapOnReconnect(self) -> None:
        """
        When the link is back on NATS after a loss, each seq client of each
        stream gets a GAP with the reason CLUSTER that covers no number of
        this node (how many messages of the other nodes were lost is not
        known), before the next message.
        """
        from streamd.config import ServerConfig
        from streamd.seqframing import SEQ, ClientHello, Gap, GapReason, Msg, Start
        from streamd.seqserver import SeqServerFactory

        from .test_seqserver import SeqDaemon, received

        daemon = SeqDaemon()
        prices = daemon.streams.open("prices")
        link = ClusterLink(daemon.streams, daemon.clock, CONFIG, 1024)
        daemon.hub.publish([b"m1"])
        prices.publish([b"p1", b"p2"])
        # Version 1: each message is a MSG frame.
        _, transport = daemon.connect(ClientHello(1, Start.NEWEST, bytes(8), 0))
        daemon.factory = SeqServerFactory(prices, daemon.clock, ServerConfig(heartbeat=None), SEQ)
        _, onPrices = daemon.connect(ClientHello(1, Start.NEWEST, bytes(8), 0))
        received(transport)
        received(onPrices)
        link.running = True
        link.connected = True
        link._lost()
        link._back("127.0.0.1:4222")
        daemon.hub.publish([b"m2"])
        prices.publish([b"p3"])
        self.assertEqual(received(transport), [Gap(2, 1, GapReason.CLUSTER), Msg(2, b"m2")])
        self.assertEqual(received(onPrices), [Gap(3, 2, GapReason.CLUSTER), Msg(3, b"p3")])


class RetryLogTests(SynchronousTestCase):
    """
    Failed attempts are logged the first time and then every power of two,
    each link with its own reason.
    """

    def logged(self, fail: Callable[[str], None]) -> list[str]:
        """
        What eight calls of C{fail} (a link's method, given an error) log.
        """
        observed = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(8):
            fail("refused")
        return [formatEvent(event) for event in observed]

    def link(self, kind: type[ClusterLink], history: str) -> ClusterLink:
        """
        A link of C{kind} in C{history} mode, which tries again every 0.5 s.
        """
        config = ClusterConfig(("nats://127.0.0.1:4222",), reconnectWait=0.5, history=history)
        return kind(Streams(Stats(), Clock()), Clock(), config, 1024)

    def test_core(self) -> None:
        """
        The core link says NATS is out of reach, at attempts 1, 2, 4 and 8.
        """
        link = self.link(ClusterLink, "core")
        self.assertEqual(
            self.logged(link._failed),
            [
                "cluster: cannot reach NATS (refused); serving local clients and sources,"
                f" retrying every 0.5 s ({n} attempt(s) so far)"
                for n in (1, 2, 4, 8)
            ],
        )

    def test_jetStream(self) -> None:
        """
        The JetStream link says JetStream does not serve the stream, at
        attempts 1, 2, 4 and 8; joining again starts the count anew.
        """
        link = self.link(JetStreamLink, "jetstream")
        assert isinstance(link, JetStreamLink)
        expected = [
            "cluster: JetStream does not serve the stream yet (refused; is it enabled, nats-server -js,"
            f" and has a NATS cluster its leader?); retrying every 0.5 s ({n} attempt(s) so far)"
            for n in (1, 2, 4, 8)
        ]
        self.assertEqual(self.logged(link._noJetStream), expected)
        link._back("127.0.0.1:4222")
        self.assertEqual(self.logged(link._noJetStream), expected)
