"""
Tests for the slow-consumer rules: a client whose backlog grows is cut by
rule, and a healthy client loses nothing.

The transport's flow control is driven by hand, as a real transport would
drive it: C{outbox.pauseProducing()} when its buffer is full,
C{outbox.resumeProducing()} when the kernel has taken it.
"""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.framing import INT32
from streamd.outbox import PendingLimits
from streamd.server import ServerConfig

from .support import InMemoryDaemon, frames

LIMITS = PendingLimits(hard=10_000, soft=1_000, softSeconds=10)
CHUNK = INT32.encode(b"x" * 96)  # 100 bytes on the wire


class SlowConsumerTests(SynchronousTestCase):
    """
    The hard and soft limits, in disconnect mode.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.daemon = InMemoryDaemon(ServerConfig(limits=LIMITS))
        self.slow, self.slowTransport = self.daemon.connect()
        self.healthy, self.healthyTransport = self.daemon.connect()
        self.slow.outbox.pauseProducing()

    def publish(self, count: int) -> None:
        for _ in range(count):
            self.daemon.hub.publish([b"x" * 96])

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def test_queuedWhilePaused(self) -> None:
        """
        While the transport is paused, output is queued and counted, not
        written; resuming hands it over in order.
        """
        self.publish(3)
        self.assertEqual(self.slow.outbox.pending, 300)
        self.assertEqual(self.slowTransport.value(), b"")
        self.slow.outbox.resumeProducing()
        self.assertEqual(self.slow.outbox.pending, 0)
        self.assertEqual(self.slowTransport.value(), CHUNK * 3)

    def test_resumeStopsWhenTransportFillsAgain(self) -> None:
        """
        Resuming hands over queued data only until the transport pauses the
        outbox again; the rest stays queued and counted.
        """
        self.publish(5)
        transport = self.slowTransport
        outbox = self.slow.outbox
        original = transport.write

        def write(data: bytes) -> None:
            original(data)
            if len(transport.value()) >= 200:
                outbox.pauseProducing()

        transport.write = write  # type: ignore[method-assign]
        outbox.resumeProducing()
        self.assertEqual(transport.value(), CHUNK * 2)
        self.assertEqual(outbox.pending, 300)

    def test_hardLimitCutsAtOnce(self) -> None:
        """
        The write that takes the backlog over --max-pending cuts the client at
        once, with one log line naming the rule; the healthy client gets every
        message.
        """
        self.publish(100)
        self.assertFalse(self.slowTransport.disconnecting)
        self.publish(1)
        self.assertTrue(self.slowTransport.disconnecting)
        self.publish(5)
        self.assertEqual(len(frames(self.healthyTransport.value())), 106)
        cut = [line for line in self.lines() if "too slow" in line]
        self.assertEqual(
            cut, ["127.0.0.1:40001 is too slow: 10100 bytes waiting, over --max-pending 10000; disconnecting"]
        )
        self.assertEqual(self.daemon.stats.slowConsumerDisconnects, 1)

    def test_softLimitCutsAfterExactlySoftSeconds(self) -> None:
        """
        A backlog above --soft-pending is tolerated for --soft-seconds, and cut
        when that time is up, not before.
        """
        self.publish(11)
        self.daemon.clock.advance(9.999)
        self.assertFalse(self.slowTransport.disconnecting)
        self.daemon.clock.advance(0.001)
        self.assertTrue(self.slowTransport.disconnecting)
        self.assertIn(
            "127.0.0.1:40001 is too slow: 1100 bytes waiting, over --soft-pending 1000 for --soft-seconds 10;"
            " disconnecting",
            self.lines(),
        )

    def test_recoveryBelowSoftLimit(self) -> None:
        """
        A client whose backlog drops back below the soft limit in time is not
        cut, and the clock starts again if it rises later.
        """
        self.publish(11)
        self.daemon.clock.advance(9)
        self.slow.outbox.resumeProducing()
        self.slow.outbox.pauseProducing()
        self.daemon.clock.advance(5)
        self.publish(11)
        self.daemon.clock.advance(9)
        self.assertFalse(self.slowTransport.disconnecting)
        self.daemon.clock.advance(1)
        self.assertTrue(self.slowTransport.disconnecting)

    def test_cutClientHoldsNothing(self) -> None:
        """
        Once cut, a client's queue is dropped and nothing more is queued for
        it, so its memory is freed at once.
        """
        self.publish(101)
        self.publish(50)
        self.assertEqual(self.slow.outbox.pending, 0)
        self.assertEqual(self.daemon.clock.getDelayedCalls(), [])

    def test_cutClientStaysCutIfResumed(self) -> None:
        """
        A transport that resumes a cut client's outbox (however late) does
        not reopen it: nothing more is written.
        """
        self.publish(101)
        written = self.slowTransport.value()
        self.slow.outbox.resumeProducing()
        self.publish(1)
        self.assertEqual(self.slowTransport.value(), written)

    def test_sendStringQueuesBehindBacklog(self) -> None:
        """
        A message the daemon sends one client with C{sendString} goes through
        that client's outbox: behind its backlog, never ahead of it.
        """
        self.publish(2)
        self.slow.sendString(b"direct")
        self.assertEqual(self.slowTransport.value(), b"")
        self.slow.outbox.resumeProducing()
        self.assertEqual(frames(self.slowTransport.value()), [b"x" * 96, b"x" * 96, b"direct"])


class BlockModeTests(SynchronousTestCase):
    """
    --slow-consumer block: publishers wait for backlogged clients.
    """

    def setUp(self) -> None:
        self.daemon = InMemoryDaemon(ServerConfig(limits=LIMITS), blockPublishers=True)
        self.publisher, self.publisherTransport = self.daemon.connect()
        self.slow, self.slowTransport = self.daemon.connect()
        self.slow.outbox.pauseProducing()

    def test_pausesAndResumesPublishers(self) -> None:
        """
        When a client's backlog crosses the soft limit, every publishing
        client's transport is paused (TCP pushes back on it); when the backlog
        drains, they are resumed.
        """
        self.publisher.dataReceived(CHUNK * 10)
        self.assertEqual(self.publisherTransport.producerState, "producing")
        self.publisher.dataReceived(CHUNK)
        self.assertEqual(self.publisherTransport.producerState, "paused")
        self.slow.outbox.resumeProducing()
        self.assertEqual(self.publisherTransport.producerState, "producing")
        self.assertEqual(len(frames(self.slowTransport.value())), 11)

    def test_softSecondsStillCuts(self) -> None:
        """
        A client that stays backlogged is still cut after --soft-seconds, and
        then the publishers resume.
        """
        self.publisher.dataReceived(CHUNK * 11)
        self.daemon.clock.advance(10)
        self.assertTrue(self.slowTransport.disconnecting)
        self.assertEqual(self.publisherTransport.producerState, "producing")

    def test_disconnectModeNeverPauses(self) -> None:
        """
        In the default mode publishers are never paused.
        """
        daemon = InMemoryDaemon(ServerConfig(limits=LIMITS))
        publisher, publisherTransport = daemon.connect()
        slow, _ = daemon.connect()
        slow.outbox.pauseProducing()
        publisher.dataReceived(CHUNK * 50)
        self.assertEqual(publisherTransport.producerState, "producing")
