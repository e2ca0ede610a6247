"""
Unit tests of the hub's outbound hook, of what L{ClusterLink} sends, and of
how the links log failed attempts, without NATS (the integration tests in
L{tests.test_cluster} use a real nats-server).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.cluster.jetstream import JetStreamLink
from streamd.cluster.link import ClusterLink
from streamd.config import ClusterConfig
from streamd.fanout.history import COUNT, FIRST, SENDER, Entry
from streamd.fanout.hub import Hub
from streamd.framing import INT32
from streamd.stats import Stats


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
        self.hub = Hub(Stats(), Clock())
        self.link = ClusterLink(self.hub, Clock(), ClusterConfig(("nats://127.0.0.1:4222",)), 1024)
        self.hub.outbound = self.link.send

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


class CoreGapTests(SynchronousTestCase):
    """
    Back on NATS in core mode, seq clients hear of the gap.
    """

    def test_gapOnReconnect(self) -> None:
        """
        When the link is back on NATS after a loss, each seq client gets a
        GAP with the reason CLUSTER that covers no number of this node (how
        many messages of the other nodes were lost is not known), before
        the next message.
        """
        from streamd.seqframing import ClientHello, Gap, GapReason, Msg, Start

        from .test_seqserver import SeqDaemon, received

        daemon = SeqDaemon()
        link = ClusterLink(daemon.hub, daemon.clock, ClusterConfig(("nats://127.0.0.1:4222",)), 1024)
        daemon.hub.publish([b"m1"])
        # Version 1: each message is a MSG frame.
        _, transport = daemon.connect(ClientHello(1, Start.NEWEST, bytes(8), 0))
        received(transport)
        link.running = True
        link.connected = True
        link._lost()
        link._back("127.0.0.1:4222")
        daemon.hub.publish([b"m2"])
        self.assertEqual(received(transport), [Gap(2, 1, GapReason.CLUSTER), Msg(2, b"m2")])


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
        return kind(Hub(Stats(), Clock()), Clock(), config, 1024)

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
