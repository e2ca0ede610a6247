"""
Tests for the shared history and the cursors that read it: a client that
falls behind is sent the log from where it stopped, the sources wait for
clients that keep up, and a client that stops taking data holds nobody back
for longer than the stall timeout.

Clients sit on L{BoundedTransport}s, which pause their producer when their
buffer is full and resume it when the test lets the client read, as a real
transport does when the kernel takes its buffer.
"""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from streamd.config import FlowControl
from streamd.fanout.cursor import MAX_WRITE, Cursor
from streamd.fanout.history import DATA, FIRST, SENDER, History, lastOf
from streamd.fanout.hub import SWEEP_INTERVAL
from streamd.framing import ASCII10, INT32, VIEW_FROM
from streamd.reasons import Reason
from streamd.seqframing import SEQ
from streamd.server import StreamServerProtocol
from streamd.web.framing import WEBSOCKET

from .support import InMemoryDaemon, frames
from .test_socketcursor import Owner

PAYLOAD = b"x" * 96
CHUNK = INT32.encode(PAYLOAD)  # 100 bytes on the wire


class BoundedTransport(StringTransport):
    """
    A transport whose buffer holds C{capacity} bytes before it pauses its
    streaming producer, and which resumes it when L{take} empties it.
    """

    capacity = 250
    full = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.io.getvalue()) > self.capacity and self.producer is not None and not self.full:
            self.full = True
            self.producer.pauseProducing()

    def take(self) -> bytes:
        """
        Let the client read everything buffered; resume the producer.
        """
        data = self.io.getvalue()
        self.clear()
        if self.producer is not None and self.full:
            self.full = False
            self.producer.resumeProducing()
        return data


class ClientPublisher:
    """
    A client that publishes, as the hub knows one: a sender the log is not
    held back for.
    """

    serial = 424242

    def published(self, entry: object) -> None:
        pass


CLIENT = ClientPublisher()


@implementer(IPushProducer)
class FakeSource:
    """
    A source that publishes only while it is not paused.
    """

    def __init__(self, daemon: InMemoryDaemon) -> None:
        self.daemon = daemon
        self.paused = False
        self.published: list[bytes] = []
        daemon.hub.addPublisher(self, waits=True)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass

    def publish(self, count: int = 1) -> int:
        """
        Publish up to C{count} messages, fewer if paused; return how many.
        """
        done = 0
        while done < count and not self.paused:
            payload = b"%06d" % len(self.published) + PAYLOAD[6:]
            self.published.append(payload)
            self.daemon.hub.publish([payload])
            done += 1
        return done


class FlowTestCase(SynchronousTestCase):
    """
    An in-memory daemon whose clients sit on L{BoundedTransport}s.
    """

    flow = FlowControl(history=1000, stallTimeout=1.0)

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.daemon = InMemoryDaemon(flow=self.flow)
        self.clock = self.daemon.clock

    def connect(self, framing=INT32) -> tuple[StreamServerProtocol, BoundedTransport]:  # type: ignore[no-untyped-def]
        protocol = self.daemon.factory.buildProtocol(None)
        assert isinstance(protocol, StreamServerProtocol)
        protocol.framing = framing
        transport = BoundedTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def sweep(self) -> None:
        self.clock.advance(SWEEP_INTERVAL)


class CursorTests(FlowTestCase):
    """
    A client that falls behind is sent the log from where it stopped.
    """

    flow = FlowControl(history=1 << 20)

    def test_behindThenCaughtUp(self) -> None:
        """
        When its transport is full the client stops at the head; what is
        published meanwhile stays in the log, is sent when the transport
        has room, and the client then gets batches at once again.
        """
        slow, transport = self.connect()
        for _ in range(5):
            self.daemon.hub.publish([PAYLOAD])
        self.assertFalse(slow.cursor.live)
        self.assertEqual(transport.value(), CHUNK * 3)
        self.assertEqual(slow.cursor.behind, 200)
        received = transport.take()
        self.assertEqual(transport.value(), CHUNK * 2)
        self.assertTrue(slow.cursor.live)
        self.daemon.hub.publish([b"live"])
        received += transport.take()
        self.assertEqual(frames(received), [PAYLOAD] * 5 + [b"live"])

    def test_nothingCopiedPerClient(self) -> None:
        """
        However many clients are behind, each entry is held once: the log's
        size is what was published.
        """
        clients = [self.connect() for _ in range(20)]
        for _ in range(50):
            self.daemon.hub.publish([PAYLOAD])
        self.assertEqual(self.daemon.hub.history.size, 50 * len(CHUNK))
        self.assertTrue(all(not protocol.cursor.live for protocol, _ in clients))

    def test_framingsMixed(self) -> None:
        """
        A client behind on the ascii10 framing is sent the log's entries in
        its framing, each encoded once for all such clients and counted with
        the log's encodings, not in its size.
        """
        int32, int32Transport = self.connect()
        ascii10 = [self.connect(ASCII10) for _ in range(2)]
        for i in range(6):
            self.daemon.hub.publish([b"m%d" % i])
        int32Transport.take()
        for _, transport in ascii10:
            self.assertEqual(frames(transport.value(), ASCII10), [b"m%d" % i for i in range(6)])
        history = self.daemon.hub.history
        self.assertEqual(
            (history.size, history.encodingBytes), (6 * len(INT32.encode(b"m0")), 6 * len(ASCII10.encode(b"m0")))
        )

    def test_liveFramingsNotCutAgain(self) -> None:
        """
        Clients of another framing that are caught up get a published entry
        encoded from the messages as its publisher's read was cut into
        them (a large one a view of the read): the log does not cut its
        bytes into messages again.
        """
        publisher, _ = self.connect()
        ascii10 = [self.connect(ASCII10) for _ in range(2)]
        history = self.daemon.hub.history
        cut: list[object] = []
        self.patch(history, "payloads", lambda entry: cut.append(entry) or [])
        messages = [b"one", b"x" * VIEW_FROM]
        publisher.dataReceived(INT32.encodeMany(messages))
        self.assertEqual(cut, [])
        for _, transport in ascii10:
            self.assertEqual(frames(transport.value(), ASCII10), messages)

    def test_ownMessagesNotSentBack(self) -> None:
        """
        A client that publishes while behind does not get its own messages
        from the log; it gets everyone else's in order.
        """
        publisher, transport = self.connect()
        _, other = self.connect()
        for _ in range(3):
            self.daemon.hub.publish([PAYLOAD])
        publisher.dataReceived(INT32.encode(b"mine"))
        self.daemon.hub.publish([b"after"])
        received = transport.take() + transport.take()
        self.assertEqual(frames(received), [PAYLOAD] * 3 + [b"after"])
        self.assertEqual(frames(other.take() + other.take())[-2:], [b"mine", b"after"])

    def test_logKeepsNoConnectionAlive(self) -> None:
        """
        The log remembers who published an entry by number only, so a client
        that published and left is not kept alive by its messages.
        """
        publisher, _ = self.connect()
        serial = publisher.cursor.serial
        publisher.dataReceived(INT32.encode(b"bye"))
        publisher.connectionLost(Failure(ConnectionDone()))
        entry = self.daemon.hub.history[0]
        self.assertEqual(entry[SENDER], serial)
        self.assertFalse([o for o in gc.get_referents(entry) if isinstance(o, (Cursor, StreamServerProtocol))])

    def test_largeEntryInPieces(self) -> None:
        """
        A client on a transport that buffers (TLS) and does not read is
        handed a 1 MiB entry 64 KiB at a time, so its transport holds about
        that much, not a copy of the whole entry; once it reads, it gets
        the entry whole, then what follows.
        """
        self.daemon.hub.flow = FlowControl(history=8 << 20)
        client, transport = self.connect()
        transport.capacity = MAX_WRITE
        big = b"y" * (1 << 20)
        self.daemon.hub.publish([big])
        self.daemon.hub.publish([b"after"])
        self.assertLessEqual(len(transport.value()), 2 * MAX_WRITE)
        received = b""
        while chunk := transport.take():
            received += chunk
        self.assertEqual(frames(received), [big, b"after"])
        self.assertTrue(client.cursor.live)

    def test_sendStringAfterBacklog(self) -> None:
        """
        A frame the daemon sends one client alone, while it is behind, comes
        after the stream published before it and before what follows.
        """
        slow, transport = self.connect()
        for _ in range(5):
            self.daemon.hub.publish([PAYLOAD])
        slow.sendString(b"direct")
        self.daemon.hub.publish([b"later"])
        received = b"".join(transport.take() for _ in range(4))
        self.assertEqual(frames(received), [PAYLOAD] * 5 + [b"direct", b"later"])

    def test_fullBeforeSubscribed(self) -> None:
        """
        A cursor whose connection filled before it subscribed (a pong sent
        while its client was still sending its token) joins the hub among
        those behind: it is never handed a batch while its transport is
        full, and gets what follows once, in order.
        """
        hub = self.daemon.hub
        transport = BoundedTransport()
        cursor = Cursor(transport, hub, INT32, Owner())
        cursor.sendPrivate(b"p" * 300)
        hub.subscribe(cursor)
        hub.publish([PAYLOAD])
        self.assertEqual(transport.value(), b"p" * 300)
        received = transport.take() + transport.take()
        self.assertEqual(received, b"p" * 300 + CHUNK)
        self.assertTrue(cursor.live)
        hub.publish([b"live"])
        self.assertEqual(frames(transport.take()), [b"live"])


class LimitTests(FlowTestCase):
    """
    A client is cut when its position leaves the log, or by the lag limits.
    """

    def test_evictedClientCut(self) -> None:
        """
        A client whose position has left the log is cut with one log line
        giving how far behind it was; a client that keeps reading gets
        every message.
        """
        slow, slowTransport = self.connect()
        _, healthy = self.connect()
        received = b""
        for _ in range(20):
            self.daemon.hub.publish([PAYLOAD], sender=CLIENT)
            received += healthy.take()
        self.assertFalse(slowTransport.disconnecting)
        self.sweep()
        self.assertTrue(slowTransport.disconnecting)
        self.assertEqual(len(frames(received)), 20)
        cut = [line for line in self.lines() if "too slow" in line]
        self.assertEqual(
            cut,
            [
                "192.168.1.1:54321 is too slow: 1000 bytes behind, its position left the --history of 1000 bytes;"
                " disconnecting"
            ],
        )
        self.assertEqual(self.daemon.stats.disconnects[Reason.EVICTED], 1)
        self.assertNotIn(slow.cursor, self.daemon.hub.subscribers)

    def test_evictedFoundOnDrain(self) -> None:
        """
        A client that takes data again after its position has left the log
        is cut then, without waiting for the sweep.
        """
        slow, transport = self.connect()
        for _ in range(20):
            self.daemon.hub.publish([PAYLOAD], sender=CLIENT)
        transport.take()
        self.assertTrue(transport.disconnecting)

    def test_maxPending(self) -> None:
        """
        With --max-pending, a client further behind than that is cut at the
        next sweep.
        """
        self.daemon.hub.flow = FlowControl(history=1 << 20, maxBehind=500)
        _, transport = self.connect()
        for _ in range(8):
            self.daemon.hub.publish([PAYLOAD])
        self.sweep()
        self.assertFalse(transport.disconnecting)
        self.daemon.hub.publish([PAYLOAD])
        self.sweep()
        self.assertTrue(transport.disconnecting)
        self.assertTrue([line for line in self.lines() if "over --max-pending 500" in line])

    def test_softPending(self) -> None:
        """
        With --soft-pending, a client further behind than that for
        --soft-seconds is cut; one that comes back under it in time is not,
        and its time starts again.
        """
        self.daemon.hub.flow = FlowControl(history=1 << 20, softBehind=300, softSeconds=10)
        slow, transport = self.connect()
        for _ in range(8):
            self.daemon.hub.publish([PAYLOAD])
        self.sweep()
        self.clock.advance(9)
        transport.take()
        self.sweep()
        self.assertFalse(transport.disconnecting)
        for _ in range(8):
            self.daemon.hub.publish([PAYLOAD])
        for _ in range(95):
            self.sweep()
        self.assertFalse(transport.disconnecting)
        for _ in range(10):
            self.sweep()
        self.assertTrue(transport.disconnecting)

    def test_cutClientHoldsNothing(self) -> None:
        """
        Once the last client that is behind is cut, the hub schedules nothing.
        """
        self.connect()
        for _ in range(20):
            self.daemon.hub.publish([PAYLOAD], sender=CLIENT)
        self.sweep()
        self.sweep()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LargeEntryPacingTests(FlowTestCase):
    """
    A history that holds one entry and little more paces its sources too.
    """

    flow = FlowControl(history=len(CHUNK) + 10)

    def test_resumedAfterRead(self) -> None:
        """
        A source whose entries are each more than an eighth of the history
        is resumed once a client that kept it waiting has read: the newest
        entry, which is never dropped, does not hold it paused for good.
        """
        source = FakeSource(self.daemon)
        _, transport = self.connect()
        received = b""
        for _ in range(20):
            source.publish(5)
            received += transport.take()
        received += transport.take()
        self.assertFalse(source.paused)
        self.assertEqual(frames(received), source.published)
        self.assertGreater(len(source.published), 20)

    def test_entryOverHistoryNotPaused(self) -> None:
        """
        An entry larger than the whole history pauses no source: waiting
        for a client would free nothing, so nothing would resume it.
        """
        source = FakeSource(self.daemon)
        self.connect()
        self.daemon.hub.publish([PAYLOAD, PAYLOAD])
        self.assertFalse(source.paused)
        self.assertEqual(source.publish(3), 3)


class PacingTests(FlowTestCase):
    """
    Sources wait for clients that keep up; nobody waits for a stalled one.
    """

    def test_sourcePausedForKeepingUpClient(self) -> None:
        """
        A source is paused rather than push out of the log what a client
        that keeps up has not been sent, resumed once the client has read,
        and the client gets every message.
        """
        source = FakeSource(self.daemon)
        _, transport = self.connect()
        received = b""
        source.publish(3)
        received += transport.take()
        source.publish(100)
        self.assertTrue(source.paused)
        self.assertLess(len(source.published), 20)
        for _ in range(50):
            received += transport.take()
            source.publish(5)
        for _ in range(10):
            received += transport.take()
        self.assertEqual(frames(received), source.published)
        self.assertGreater(len(source.published), 100)

    def test_pausesLoggedOncePerTenSeconds(self) -> None:
        """
        A stream paced by a slow reader pauses its sources often; the log
        says so at most once every ten seconds, with the count since.
        """
        source = FakeSource(self.daemon)
        _, transport = self.connect()
        source.publish(3)
        transport.take()

        def pauseAndResume() -> None:
            source.publish(30)
            for _ in range(15):
                transport.take()

        for _ in range(3):
            pauseAndResume()
        self.clock.advance(10)
        source.publish(3)
        transport.take()
        pauseAndResume()
        lines = [line for line in self.lines() if "pausing" in line]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("(1 pause(s) since the last such line)", lines[0])
        self.assertIn("(3 pause(s) since the last such line)", lines[1])
        self.assertEqual(self.daemon.hub.pauses, 4)

    def test_neverDrainedWaitedForAtMostStallTimeout(self) -> None:
        """
        A client that never reads holds a source back for the stall timeout
        from when it fell behind, no longer; then it is cut once its position
        leaves the log.
        """
        source = FakeSource(self.daemon)
        _, transport = self.connect()
        self.assertLess(source.publish(100), 100)
        self.assertTrue(source.paused)
        self.clock.advance(0.9)
        self.assertTrue(source.paused)
        for _ in range(3):
            self.sweep()
        self.assertFalse(source.paused)
        self.assertEqual(source.publish(20), 20)
        self.sweep()
        self.assertTrue(transport.disconnecting)

    def test_briefPauseNeverCut(self) -> None:
        """
        A reader that stops for less than the stall timeout while a source
        floods (a scrolling terminal, Ctrl-S, a collector pause) holds the
        source back meanwhile, then gets every message, and is not cut.
        """
        source = FakeSource(self.daemon)
        _, transport = self.connect()
        received = b""
        for _ in range(50):
            source.publish(100)
            self.clock.advance(0.8)
            received += transport.take()
        source.publish(100)
        while chunk := transport.take():
            received += chunk
        self.assertFalse(transport.disconnecting)
        self.assertEqual(frames(received), source.published)
        self.assertGreater(len(source.published), 50)

    def test_stalledClientWaitedForAtMostStallTimeout(self) -> None:
        """
        A client that read and then stopped holds the source back for the
        stall timeout (to the sweep), then is no longer waited for, and is
        cut when its position leaves the log.
        """
        source = FakeSource(self.daemon)
        _, transport = self.connect()
        source.publish(3)
        transport.take()
        source.publish(100)
        self.assertTrue(source.paused)
        self.clock.advance(0.9)
        self.assertTrue(source.paused)
        for _ in range(3):
            self.sweep()
        self.assertFalse(source.paused)
        self.assertEqual(source.publish(20), 20)
        self.sweep()
        self.assertTrue(transport.disconnecting)

    def test_disconnectModeClientsNeverPaused(self) -> None:
        """
        In the default mode a publishing client is never paused: it pushes
        out even what a client that keeps up needs, and that client is cut.
        """
        publisher, publisherTransport = self.connect()
        _, transport = self.connect()
        publisher.dataReceived(CHUNK * 3)
        transport.take()
        for _ in range(20):
            publisher.dataReceived(CHUNK)
        self.assertEqual(publisherTransport.producerState, "producing")
        transport.take()
        self.assertTrue(transport.disconnecting)

    def test_blockModePausesClients(self) -> None:
        """
        With --slow-consumer block, a publishing client's transport is paused
        like a source, and resumed when the client that keeps up has read.
        """
        self.daemon.hub.flow = FlowControl(history=1000, blockPublishers=True)
        publisher, publisherTransport = self.connect()
        _, transport = self.connect()
        publisher.dataReceived(CHUNK * 3)
        received = transport.take()
        sent = 3
        while publisherTransport.producerState == "producing" and sent < 30:
            publisher.dataReceived(CHUNK)
            sent += 1
        self.assertEqual(publisherTransport.producerState, "paused")
        self.assertEqual(sent, 17)
        for _ in range(20):
            received += transport.take()
        self.assertEqual(publisherTransport.producerState, "producing")
        self.assertEqual(len(frames(received)), sent)


class HistoryTests(SynchronousTestCase):
    """
    The log's numbering.
    """

    def test_sequenceNumbers(self) -> None:
        """
        Messages are numbered from 1 across entries, and L{History.find}
        gives the entry holding a number.
        """
        history = History()
        first = history.appendPayloads([b"a", b"b"])
        second = history.appendPayloads([b"c"])
        self.assertEqual((first[FIRST], lastOf(first), second[FIRST], lastOf(second)), (1, 2, 3, 3))
        self.assertEqual([history.find(n) for n in (1, 2, 3, 4)], [0, 0, 1, 2])
        history.evictOldest()
        self.assertEqual((history.start, history.end, history.find(1)), (1, 2, 1))
        self.assertEqual(history.size, len(INT32.encode(b"c")))

    @given(st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=30))
    def test_entryAtByMillisecond(self, times: list[float]) -> None:
        """
        L{History.entryAt} finds the first entry of every millisecond
        (C{int(time * 1000)}) whatever the times, in order or not, exactly
        as a mark taken at every entry would: the history's shortcut of
        comparing times with the next millisecond's start misses none.
        """
        history = History()
        for n, time in enumerate(times):
            history.append(INT32.encode(b"%d" % n), INT32, 1, time=time)
        marks: dict[int, int] = {}
        newest = -1
        for n, time in enumerate(times):
            millisecond = int(time * 1000)
            if millisecond > newest:
                marks[millisecond] = n
                newest = millisecond
        for millisecond in {*marks, *(m + 1 for m in marks), *(m - 1 for m in marks)}:
            expected = min((n for m, n in marks.items() if m >= millisecond), default=history.end)
            self.assertEqual(history.entryAt(millisecond), expected)

    def test_untrackedByTheCycleCollector(self) -> None:
        """
        Once collected young, an entry is no longer tracked by Python's cycle
        collector, so that full collections do not walk the whole log.
        """
        history = History()
        entries = [history.appendPayloads([b"a"]), history.append(ASCII10.encode(b"b"), ASCII10, 1)]
        gc.collect()
        self.assertEqual([gc.is_tracked(entry) for entry in entries], [False, False])

    def test_encodingsCountedUntilEvicted(self) -> None:
        """
        An entry's encoding in another framing is made once, counted with
        the log's encodings, and dropped with the entry.
        """
        history = History()
        entry = history.appendPayloads([b"a", b"b"])
        ascii10 = history.encoded(entry, ASCII10)
        self.assertIs(history.encoded(entry, ASCII10), ascii10)
        self.assertEqual(ascii10, ASCII10.encodeMany([b"a", b"b"]))
        self.assertIs(history.encoded(entry, INT32), entry[DATA])
        self.assertEqual((history.size, history.encodingBytes), (len(entry[DATA]), len(ascii10)))
        history.evictOldest()
        self.assertEqual((history.size, history.encodingBytes), (0, 0))
        self.assertEqual(history.payloads(entry), [b"a", b"b"])

    def test_encodingsBounded(self) -> None:
        """
        The encodings are a cache apart from the log: however many framings
        readers ask for (resuming from the start), no message leaves the log
        for them, and the cache sheds its oldest encodings past its budget,
        making them again when asked.
        """
        history = History(encodingBudget=1000)
        entries = [history.appendPayloads([b"x" * 90]) for _ in range(30)]
        held = history.size
        for framing in (ASCII10, SEQ, WEBSOCKET):
            for entry in entries:
                history.encoded(entry, framing)
        self.assertEqual(history.size, held)
        self.assertLessEqual(history.encodingBytes, 1000)
        self.assertEqual(history.encoded(entries[0], ASCII10), ASCII10.encode(b"x" * 90))


class InterleavingTests(FlowTestCase):
    """
    Whatever the order of publishes, reads and stalls.
    """

    @settings(max_examples=settings().max_examples * 3 // 5, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.tuples(st.just("publish"), st.integers(1, 5)),
                st.tuples(st.just("read"), st.integers(0, 2)),
                st.tuples(st.just("wait"), st.sampled_from([0.05, 0.3, 2.0])),
            ),
            max_size=60,
        )
    )
    def test_keepingUpClientsGetEverything(self, steps: list[tuple[str, object]]) -> None:
        """
        Every client receives a prefix of the published sequence with
        nothing missing or reordered; a client that reads after every step
        receives all of it and is never cut.
        """
        self.setUp()
        source = FakeSource(self.daemon)
        clients = [self.connect() for _ in range(3)]
        received = [b""] * 3
        for action, argument in steps:
            if action == "publish":
                source.publish(int(argument))  # type: ignore[call-overload]
            elif action == "read":
                received[int(argument)] += clients[int(argument)][1].take()  # type: ignore[call-overload]
            else:
                self.clock.advance(float(argument))  # type: ignore[arg-type]
            received[0] += clients[0][1].take()
        for _ in range(20):
            received[0] += clients[0][1].take()
        for index, data in enumerate(received):
            got = frames(data)
            self.assertEqual(got, source.published[: len(got)], f"client {index}")
        self.assertEqual(frames(received[0]), source.published)
        self.assertFalse(clients[0][1].disconnecting)
