"""
Tests for L{streamd.durable}: the log on disk replayed after a restart with
its epoch and numbers, a torn tail cut, old segments deleted whole, the
publishers' window kept, C{--fsync always} acknowledging after the sync,
acknowledged and deduplicated publishing on C{seq}, starting at a time, and
a C{file:} source going on where it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import FlowControl, ServerConfig
from streamd.durable.datadir import DataDir
from streamd.durable.history import DurableHistory
from streamd.durable.segment import INDEX_SUFFIX, LOG_SUFFIX
from streamd.durable.syncer import FsyncPolicy, Syncer
from streamd.fanout.history import COUNT, DATA, FIRST
from streamd.fanout.resume import Start, StartRequest, startPosition
from streamd.fanout.streams import Streams
from streamd.framing import INT32
from streamd.seqframing import (
    SEQ,
    Ack,
    ClientHello,
    PubN,
    SBatch,
    ServerFrame,
    SMsg,
    SPubN,
    StreamStart,
    decodeServerFrame,
    framed,
)
from streamd.seqserver import SeqServerFactory
from streamd.since import parseSince
from streamd.sources import makeSource
from streamd.sources.follow import FileSource
from streamd.stats import Stats

from .support import frames
from .test_seqserver import SeqDaemon
from .test_sources_lines import recordingContext

IDENTITY = b"client-a"


def temporary(case: SynchronousTestCase) -> str:
    """
    A path in a new directory, removed when C{case} ends.
    """
    directory = tempfile.mkdtemp(prefix="streamd-durable-")
    case.addCleanup(shutil.rmtree, directory)
    return os.path.join(directory, "data")


def synchronously(work: Callable[..., None], *args: Any) -> Deferred[None]:
    """
    Run a sync at once, in this thread: the tests' stand-in for the
    reactor's thread pool, with the same work.
    """
    return maybeDeferred(work, *args)


class Daemon(SeqDaemon):
    """
    A daemon's streams on a data directory, on a L{Clock}: made again on the
    same directory, it is a restarted daemon.
    """

    def __init__(self, path: str, fsync: str = "no", history: int = 64 << 20, **held: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.dataDir = DataDir(self.clock, path, fsync, synchronously)
        self.dataDir.start()
        self.streams = Streams(Stats(), self.clock, FlowControl(history=history), dataDir=self.dataDir, **held)
        self.hub = self.streams.default
        self.factory = SeqServerFactory(self.hub, self.clock, ServerConfig(heartbeat=None), SEQ, streams=self.streams)
        self._port = 40000

    def stop(self) -> None:
        """
        Stop as the service does: syncing, then every stream's log.
        """
        self.dataDir.stop()
        self.streams.stop()
        self.dataDir.unlock()


def received(transport: StringTransport) -> list[ServerFrame]:
    data = transport.value()
    transport.clear()
    return [decodeServerFrame(f) for f in frames(data)]


def messagesIn(sent: list[ServerFrame]) -> list[tuple[int, bytes]]:
    """
    The stream messages of C{sent}, SMSG and SBATCH alike.
    """
    found: list[tuple[int, bytes]] = []
    for frame in sent:
        if isinstance(frame, SMsg):
            found.append((frame.seq, frame.payload))
        elif isinstance(frame, SBatch):
            found += enumerate(frame.payloads, frame.first)
    return found


def durable(daemon: Daemon) -> DurableHistory:
    history = daemon.hub.history
    assert isinstance(history, DurableHistory)
    return history


class ReplayTests(SynchronousTestCase):
    """
    A restarted daemon serves what the stopped one wrote, under the same
    epoch and numbers, without reading its log into memory.
    """

    def setUp(self) -> None:
        self.path = temporary(self)

    def test_sameEpochAndMessages(self) -> None:
        """
        The entries come back as they were published, with the same epoch,
        and numbering goes on after them.
        """
        daemon = Daemon(self.path)
        for n in range(1, 6):
            daemon.hub.publish([b"m%d" % n, b"n%d" % n])
            daemon.clock.advance(1)
        epoch = daemon.hub.history.epoch
        daemon.stop()
        again = Daemon(self.path)
        history = durable(again)
        self.assertEqual(history.epoch, epoch)
        self.assertEqual(history.nextSequence, 11)
        self.assertEqual(len(history), 5)
        self.assertEqual(
            [history.payloads(history[i]) for i in range(history.start, history.end)],
            [[b"m%d" % n, b"n%d" % n] for n in range(1, 6)],
        )
        self.assertEqual(history[history.find(7)][FIRST], 7)
        again.hub.publish([b"after"])
        self.assertEqual(history[history.end - 1][FIRST], 11)
        again.stop()

    def test_resumeAcrossRestartHasNoGap(self) -> None:
        """
        A client that resumes after a restart gets what it had not been
        sent, with no GAP: its epoch is still the stream's.
        """
        daemon = Daemon(self.path)
        for n in range(1, 5):
            daemon.hub.publish([b"m%d" % n])
        epoch = daemon.hub.history.epoch
        daemon.stop()
        again = Daemon(self.path)
        point = startPosition(again.hub.history, StartRequest(Start.RESUME, epoch, 2))
        self.assertIsNone(point.gap)
        self.assertEqual(point.next, 3)
        again.stop()

    def test_sinceByTime(self) -> None:
        """
        A start at a time begins at the first message that came in then or
        after, in the stored segments as in memory.
        """
        daemon = Daemon(self.path)
        start = daemon.clock.seconds()
        for n in range(1, 5):
            daemon.hub.publish([b"m%d" % n])
            daemon.clock.advance(10)
        daemon.stop()
        again = Daemon(self.path)
        again.clock.advance(100)
        again.hub.publish([b"m5"])
        history = again.hub.history
        for seconds, first in ((0, 1), (15, 3), (30, 4), (35, 5), (1000, 6)):
            request = StartRequest(Start.SINCE, position=int((start + seconds) * 1000))
            self.assertEqual(startPosition(history, request).next, first, seconds)
        again.stop()

    def segments(self) -> list[str]:
        """
        The names of the default stream's segments on disk, oldest first.
        """
        return sorted(n for n in os.listdir(os.path.join(self.path, "streams", "default")) if n.endswith(LOG_SUFFIX))

    def test_oldSegmentsDeletedWhole(self) -> None:
        """
        Past --history, the oldest segments go whole, once nothing of them
        is held, deleted by the syncer (not on the reactor's thread, with
        the next sync); the rest is served after a restart.
        """
        daemon = Daemon(self.path, history=8 << 20)
        for n in range(40):
            daemon.hub.publish([bytes([n]) * (512 << 10)])
        self.assertEqual(self.segments()[0], "00000000000000000001" + LOG_SUFFIX)
        daemon.clock.advance(1)
        segments = self.segments()
        history = daemon.hub.history
        self.assertLessEqual(history.size, 8 << 20)
        self.assertGreater(int(segments[0].split(".")[0]), 1)
        self.assertLessEqual(int(segments[0].split(".")[0]), history[history.start][FIRST])
        oldest = history[history.start][FIRST]
        daemon.stop()
        again = Daemon(self.path, history=8 << 20)
        self.assertLessEqual(again.hub.history[again.hub.history.start][FIRST], oldest)
        self.assertEqual(again.hub.history.nextSequence, 41)
        again.stop()


    def test_alwaysDeletesAtOnce(self) -> None:
        """
        With C{--fsync always}, the segments let go of are deleted by the
        sync that starts at once.
        """
        daemon = Daemon(self.path, fsync="always", history=8 << 20)
        for n in range(40):
            daemon.hub.publish([bytes([n]) * (512 << 10)])
        self.assertGreater(int(self.segments()[0].split(".")[0]), 1)
        daemon.stop()

    def test_undeletableSegment(self) -> None:
        """
        A segment that cannot be deleted is logged, one line, and the
        syncs go on.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        daemon = Daemon(self.path, history=8 << 20)
        stuck = os.path.join(self.path, "streams", "default", "stuck")
        os.mkdir(stuck + LOG_SUFFIX)
        syncer = daemon.dataDir.syncer
        syncer.remove([stuck])
        daemon.clock.advance(1)
        lines = [formatEvent(e) for e in events if "could not delete" in formatEvent(e)]
        self.assertEqual(len(lines), 1)
        self.assertIn(stuck, lines[0])
        self.assertEqual(syncer.syncs, 1)
        os.rmdir(stuck + LOG_SUFFIX)
        daemon.stop()


class RecoveryTests(SynchronousTestCase):
    """
    A log cut in the middle of a write is cut back to its last whole,
    good record, with one log line, and everything before is served.
    """

    def setUp(self) -> None:
        self.path = temporary(self)
        daemon = Daemon(self.path)
        for n in range(1, 11):
            daemon.hub.publish([b"message %d" % n])
        daemon.stop()
        self.segment = os.path.join(self.path, "streams", "default", "00000000000000000001")
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]

    def reopen(self) -> DurableHistory:
        daemon = Daemon(self.path)
        self.addCleanup(daemon.stop)
        return durable(daemon)

    def test_tornTail(self) -> None:
        """
        A log a few bytes short loses its last record alone.
        """
        os.truncate(self.segment + LOG_SUFFIX, os.path.getsize(self.segment + LOG_SUFFIX) - 3)
        history = self.reopen()
        self.assertEqual(history.nextSequence, 10)
        self.assertEqual(history.payloads(history[history.end - 1]), [b"message 9"])
        lines = [formatEvent(e) for e in self.events if "torn or corrupt" in formatEvent(e)]
        self.assertEqual(len(lines), 1)

    def test_corruptRecord(self) -> None:
        """
        A record whose bytes changed fails its checksum: it and what
        follows are cut.
        """
        size = os.path.getsize(self.segment + LOG_SUFFIX)
        with open(self.segment + LOG_SUFFIX, "r+b") as log:
            log.seek(size - 1)
            log.write(b"X")
        os.truncate(self.segment + INDEX_SUFFIX, 0)
        history = self.reopen()
        self.assertEqual(history.nextSequence, 10)

    def test_lostIndex(self) -> None:
        """
        An index that lost its end (it follows the syncs) is made again
        from the log.
        """
        os.truncate(self.segment + INDEX_SUFFIX, 24 * 3 + 5)
        history = self.reopen()
        self.assertEqual(history.nextSequence, 11)
        self.assertEqual([history[i][FIRST] for i in range(history.start, history.end)], list(range(1, 11)))


class FsyncTests(SynchronousTestCase):
    """
    With C{--fsync always} a publisher's acknowledgement waits for the sync
    that covers its message; with C{everysec} the sync comes once a second.
    """

    def test_everysecSyncsOnTheClock(self) -> None:
        """
        Nothing is synced until a second has passed.
        """
        daemon = Daemon(temporary(self), fsync="everysec")
        daemon.hub.publish([b"m"])
        syncer = daemon.dataDir.syncer
        self.assertEqual(syncer.syncs, 0)
        daemon.clock.advance(1)
        self.assertEqual(syncer.syncs, 1)
        daemon.stop()

    def test_alwaysAcknowledgesAfterTheSync(self) -> None:
        """
        The ACK comes after the sync that covers the message, which starts
        at once.
        """
        daemon = Daemon(temporary(self), fsync="always")
        protocol, transport = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, IDENTITY))
        received(transport)
        protocol.dataReceived(framed(PubN(1, b"one")))
        self.assertEqual(daemon.dataDir.syncer.syncs, 1)
        self.assertEqual(received(transport), [Ack(1, 1)])
        daemon.stop()


    def test_deletingAfterAFailedSync(self) -> None:
        """
        The segments to delete when a sync fails are deleted by the next
        sync that works.
        """
        directory = os.path.dirname(temporary(self))
        doomed = os.path.join(directory, "00000000000000000001")
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX):
            open(doomed + suffix, "wb").close()
        outcomes = [fail(OSError(errno.EIO, "I/O error")), None]

        def inThread(work: Callable[..., Any], *args: Any) -> Deferred[Any]:
            outcome = outcomes.pop(0)
            return maybeDeferred(work, *args) if outcome is None else outcome

        clock = Clock()
        syncer = Syncer(clock, FsyncPolicy.EVERYSEC, inThread)
        syncer.start()
        syncer.remove([doomed])
        clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertTrue(os.path.exists(doomed + LOG_SUFFIX))
        clock.advance(1)
        self.assertEqual(os.listdir(directory), [])
        syncer.stop()


class AcknowledgedPublishingTests(SynchronousTestCase):
    """
    A client that numbers its messages gets an ACK for each, once it is in
    the log, and a retransmission, on another connection or after a
    restart, is acknowledged again but not published twice.
    """

    def setUp(self) -> None:
        self.path = temporary(self)

    def test_ackedOnce(self) -> None:
        """
        Messages 1 to 3, sent again with 4 after a cut, are in the stream
        once each; every ACK says the last number it covers.
        """
        daemon = Daemon(self.path)
        _, reader = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, b"reader-1"))
        first, transport = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, IDENTITY))
        received(transport)
        first.dataReceived(b"".join(framed(PubN(n, b"m%d" % n)) for n in (1, 2, 3)))
        self.assertEqual(received(transport), [Ack(3, 3)])
        first.connectionLost()
        second, transport = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, IDENTITY))
        received(transport)
        second.dataReceived(b"".join(framed(PubN(n, b"m%d" % n)) for n in (2, 3, 4)))
        self.assertEqual(received(transport), [Ack(4, 4)])
        second.dataReceived(framed(PubN(4, b"m4")))
        self.assertEqual(received(transport), [Ack(4, 4)])
        self.assertEqual(messagesIn(received(reader)), [(n, b"m%d" % n) for n in (1, 2, 3, 4)])
        daemon.stop()

    def test_windowSurvivesRestart(self) -> None:
        """
        After a restart, a retransmission of what was taken is dropped,
        and its ACK says so; new numbers are taken.
        """
        daemon = Daemon(self.path)
        protocol, transport = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, IDENTITY))
        protocol.dataReceived(b"".join(framed(SPubN(n, "prices", b"m%d" % n)) for n in (1, 2)))
        daemon.stop()
        again = Daemon(self.path)
        protocol, transport = again.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, IDENTITY))
        received(transport)
        protocol.dataReceived(framed(SPubN(2, "prices", b"m2")) + framed(SPubN(3, "prices", b"m3")))
        self.assertEqual(received(transport), [Ack(2, 2), Ack(3, 3)])
        prices = again.streams.get("prices")
        assert prices is not None
        self.assertEqual(prices.history.nextSequence, 4)
        again.stop()

    def test_resumingPublisherNotSentItsOwn(self) -> None:
        """
        After a restart, a client that names itself still does not get back
        what it published, from the log on disk.
        """
        daemon = Daemon(self.path)
        protocol, _ = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0, IDENTITY))
        protocol.dataReceived(framed(PubN(1, b"mine")))
        daemon.hub.publish([b"theirs"])
        epoch = daemon.hub.history.epoch
        daemon.stop()
        again = Daemon(self.path)
        _, transport = again.connect(ClientHello(5, Start.RESUME, epoch, 0, IDENTITY))
        sent = received(transport)
        self.assertIsInstance(sent[1], StreamStart)
        self.assertEqual(messagesIn(sent), [(2, b"theirs")])
        again.stop()

    def test_numberingNeedsAnIdentity(self) -> None:
        """
        A client that numbers its messages without naming itself is cut:
        a retransmission could not be told apart.
        """
        daemon = Daemon(self.path)
        protocol, transport = daemon.connect(ClientHello(5, Start.NEWEST, bytes(8), 0))
        protocol.dataReceived(framed(PubN(1, b"m")))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(daemon.hub.history.nextSequence, 1)
        daemon.stop()


class AgeTests(SynchronousTestCase):
    """
    C{--history-age}: messages older than that leave the history.
    """

    def test_oldMessagesLeave(self) -> None:
        """
        Once a second, what came in more than the age ago goes, but the
        newest stays.
        """
        daemon = Daemon(temporary(self), historyAge=10.0)
        for _ in range(5):
            daemon.hub.publish([b"m"])
            daemon.clock.advance(3)
        daemon.clock.advance(1)
        history = daemon.hub.history
        self.assertEqual(history[history.start][FIRST], 3)
        daemon.clock.advance(60)
        self.assertEqual(len(history), 1)
        daemon.stop()


class SinceTests(SynchronousTestCase):
    """
    L{parseSince} reads a time ago or an ISO time.
    """

    def test_forms(self) -> None:
        """
        Durations count back from now; an ISO time without a zone is UTC.
        """
        now = 1_700_000_000.0
        self.assertEqual(parseSince("10m", now), int((now - 600) * 1000))
        self.assertEqual(parseSince("90", now), int((now - 90) * 1000))
        self.assertEqual(parseSince("2024-05-01T12:00:00Z", now), 1714564800000)
        self.assertEqual(parseSince("2024-05-01T12:00:00", now), 1714564800000)
        self.assertRaises(ValueError, parseSince, "yesterday", now)


class FilePlaceTests(SynchronousTestCase):
    """
    A C{file:} source with a data directory goes on, after a restart,
    from the end of the last line it published, not from the file's end.
    """

    def test_continuesWhereItWas(self) -> None:
        """
        Lines written while the daemon was down are published when it is
        back; a line begun is published once whole.
        """
        directory = temporary(self)
        os.makedirs(directory)
        path = os.path.join(directory, "app.log")
        with open(path, "wb") as f:
            f.write(b"old\n")
        clock = Clock()
        dataDir = DataDir(clock, os.path.join(directory, "data"), "no", synchronously)

        def run(appended: bytes) -> list[bytes]:
            context, recorder = recordingContext(clock, dataDir=dataDir)
            source = makeSource(f"file:{path}", context)
            assert isinstance(source, FileSource)
            source.startService()
            with open(path, "ab") as f:
                f.write(appended)
            clock.advance(FileSource.pollInterval)
            source.stopService()
            return recorder.messages

        self.assertEqual(run(b"one\ntw"), [b"one"])
        self.assertEqual(run(b"o\nthree\n"), [b"two", b"three"])
        dataDir.unlock()


class EntryTests(SynchronousTestCase):
    """
    A stored entry is what was published: its data, count and numbers.
    """

    def test_storedEntry(self) -> None:
        """
        An entry read from the mapping has the bytes, count and first
        number that were written.
        """
        path = temporary(self)
        daemon = Daemon(path)
        data = INT32.encodeMany([b"a", b"bc"])
        daemon.hub.publish([b"a", b"bc"], data, INT32)
        daemon.stop()
        again = Daemon(path)
        entry = again.hub.history[0]
        self.assertEqual((entry[FIRST], entry[COUNT], bytes(entry[DATA])), (1, 2, data))
        again.stop()
