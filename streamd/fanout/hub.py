"""
The hub: appends every published batch to the history and fans it out.

Subscribers are cursors (L{streamd.fanout.cursor}).  The hub hands each batch at
once to every cursor that is caught up; a cursor whose connection is full
stays where it is and sends from the log when it can.  The hub bounds the
log, paces the publishers that can wait, and cuts the subscribers that fall
out of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger

from streamd.config import FlowControl
from streamd.fanout.cursor import Cursor
from streamd.fanout.history import COUNT, DATA, FIRST, DiskFull, Entry, History, HistoryPool
from streamd.framing import INT32, Framing, Payload
from streamd.names import DEFAULT
from streamd.reasons import Reason
from streamd.stats import Stats

MiB = 1024 * 1024


class Pool(Protocol):
    """
    The streams a hub's history shares a byte budget with (see
    L{streamd.fanout.streams}).
    """

    pool: HistoryPool

    def overflow(self) -> None:
        """
        The histories hold more than their budget together.
        """


class Sender(Protocol):
    """
    Who publishes a batch and does not get it back: a subscriber's cursor,
    or a cluster link.
    """

    serial: int

    def published(self, entry: Entry) -> None:
        """
        C{entry} holds what it published, now in the log.
        """


PAUSE_LOG_SECONDS = 10.0
"""
Seconds between two log lines about publishers being paused: a stream paced
by a slow reader pauses many times a second.
"""

FULL_RETRY = 1.0
"""
Seconds between two tries to write a source's messages while the data
directory is full.
"""

FULL_LOG_SECONDS = 60.0
"""
Seconds between two log lines about a full disk.
"""

RATE_WINDOW = 1.0
"""
Seconds over which a stream's rate is measured.
"""

SWEEP_INTERVAL = 0.1
"""
Seconds between two looks at the subscribers that are behind: for those to
cut, and for those no longer to wait for.
"""


class Hub:
    """
    The log and its subscribers.

    A subscriber I{keeps up} while it is caught up, or while its connection,
    having fallen behind, took what it was given (or fell behind) within the
    last C{stallTimeout} seconds; one that has taken nothing for longer (a
    client that stopped reading) is no longer waited for.
    Sources (and, with C{blockPublishers}, publishing clients) never push a
    message out of the log that a subscriber that keeps up has not been
    sent: they are paused instead, until there is room.  Other publishers
    are never paused, and the subscribers they push out are cut.
    """

    log = Logger()

    def __init__(
        self,
        stats: Stats,
        clock: IReactorTime,
        flow: FlowControl = FlowControl(),
        name: str = DEFAULT,
        number: int = 0,
        pool: Pool | None = None,
        history: History | None = None,
    ) -> None:
        self.stats = stats
        self.clock = clock
        self.flow = flow
        self.name = name
        self.number = number
        self.pool = pool
        # Encodings for subscribers of other framings: a cache of half the
        # history's size at most, apart from it (see History.encodingBytes).
        if history is None:
            history = History(
                encodingBudget=max(flow.history // 2, 1 << 20), pool=None if pool is None else pool.pool
            )
        self.history = history
        self.lastActivity = 0.0
        # The messages published in the last RATE_WINDOW seconds or so:
        # from the number of the first of the window on.
        self._windowStart = 0.0
        self._windowEnd = RATE_WINDOW
        self._windowFirst = 1
        # The byte budget this hub's history shares with other streams',
        # looked at after every publish.
        self._shared = None if pool is None else pool.pool
        self._rate = 0.0
        self._framings: dict[object, Framing] = {}
        self._live: dict[Cursor, None] = {}
        self._deliveries: tuple[tuple[Cursor, Framing, Callable[[bytes, int], None]], ...] | None = ()
        self._behind: dict[Cursor, None] = {}
        self._waitingFor: dict[Cursor, None] = {}
        # Every publisher, and whether it waits for subscribers that keep up.
        self._publishers: dict[IPushProducer, bool] = {}
        self.paused = False
        self.pauses = 0
        self._pauseLogged: float | None = None
        self._pausesLogged = 0
        self._sweep: IDelayedCall | None = None
        # While the history's disk is full: the sources' batches not yet
        # written, and the try to write them again.
        self.full = False
        self._fullLogged: float | None = None
        self._unwritten: list[Sequence[Payload]] = []
        self._retry: IDelayedCall | None = None
        # Called with every entry once it is appended and fanned out here
        # (see streamd.cluster); None on a single node.
        self.outbound: Callable[[Entry], None] | None = None
        # Given, instead of the log, what is published here, when a cluster's
        # stream numbers every message (JetStream mode): the messages come
        # back with their numbers through publish(first=...).
        self.upstream: Callable[[Sequence[Payload], Sender | None], None] | None = None

    @property
    def blockPublishers(self) -> bool:
        return self.flow.blockPublishers

    @property
    def subscribers(self) -> tuple[Cursor, ...]:
        """
        Every subscriber, caught up or behind.
        """
        return (*self._live, *self._behind)

    def subscribe(self, cursor: Cursor) -> None:
        """
        Add C{cursor} at the head of the log; among those behind if its
        connection is full already (a pong it was sent before its stream
        started), so that it is handed no batch before it has sent that.
        """
        if not cursor.live:
            self.cursorBehind(cursor)
            return
        self._live[cursor] = None
        self._deliveries = None

    def unsubscribe(self, cursor: Cursor) -> None:
        self.lastActivity = self.clock.seconds()
        if self._live.pop(cursor, 0) is None:
            self._deliveries = None
        self._behind.pop(cursor, None)
        self._waitingFor.pop(cursor, None)
        if self.paused:
            self._relieve()

    def publish(
        self,
        payloads: Sequence[Payload],
        raw: bytes = b"",
        framing: Framing | None = None,
        sender: Sender | None = None,
        received: int | None = None,
        first: int | None = None,
        number: int = 0,
    ) -> Entry | None:
        """
        Append C{payloads} to the log and send them to every subscriber that
        is caught up, except C{sender}; with an L{upstream}, hand them to it
        instead, unless they come numbered from it.

        @param raw: the same messages already framed with C{framing}, if the
            caller has them, so they are not encoded again.
        @param sender: the subscriber that published them; C{None} for the
            daemon's own sources; for a cluster's other nodes, the cluster
            link.
        @param received: the bytes they came in, counted as the daemon's
            input; by default, their payloads' bytes.
        @param first: the sequence number of the first message, given by a
            cluster's stream; by default, the log's next.
        @param number: the publish number of the last of them, for a sender
            that numbers its messages.
        @return: their entry in the log, or C{None} if they went upstream,
            or, from a source, wait for room on the disk.
        @raise DiskFull: for a client's messages that the log on disk has no
            room for; they are not published.
        """
        if first is None and self.upstream is not None:
            self.upstream(payloads, sender)
            return None
        history = self.history
        serial = 0 if sender is None else sender.serial
        if first is not None and history.nextSequence < first:
            self.gap(history.nextSequence, first - 1)
        now = self.lastActivity = self.clock.seconds()
        try:
            if raw and framing is not None:
                entry = history.append(raw, framing, len(payloads), serial, first, now, number)
            else:
                entry = history.append(
                    INT32.encodeMany(payloads), INT32, len(payloads), serial, first, now, number
                )
                raw, framing = entry[DATA], INT32
        except DiskFull as e:
            self._diskFull(str(e))
            if sender is not None:
                raise
            self._unwritten.append(list(payloads))
            return None
        count = entry[COUNT]
        delivered = 0
        others = []
        deliveries = self._deliveries
        if deliveries is None:
            deliveries = self._deliveries = tuple((c, c.framing, c.deliver) for c in self._live)
        # The hot loop: cursors that speak the sender's framing get the bytes
        # as they arrived; the others are served after, one encoding per
        # framing, made once and kept in the log.
        for cursor, cursorFraming, deliver in deliveries:
            if cursor is sender:
                continue
            if cursorFraming is framing:
                deliver(raw, count)
                delivered += 1
            else:
                others.append(cursor)
        sent = len(raw) * delivered
        if others:
            # Each framing's encoding looked up in the log once, not per
            # cursor: a seq listener's clients all want the same one.
            encodings: dict[Framing, bytes] = {}
            for cursor in others:
                if cursor.live:
                    cursorFraming = cursor.framing
                    data = encodings.get(cursorFraming)
                    if data is None:
                        data = encodings[cursorFraming] = history.encoded(entry, cursorFraming, payloads)
                    cursor.deliver(data, count)
                    sent += len(data)
                    delivered += 1
        stats = self.stats
        stats.messagesOut += count * delivered
        stats.bytesOut += sent
        stats.messagesIn += count
        stats.bytesIn += sum(map(len, payloads)) if received is None else received
        if sender is not None:
            sender.published(entry)
        if self.outbound is not None:
            self.outbound(entry)
        if now >= self._windowEnd:
            # A new window of rate(): the last one has lasted RATE_WINDOW.
            nextSequence = history.nextSequence
            self._rate = (nextSequence - self._windowFirst) / (now - self._windowStart)
            self._windowStart, self._windowFirst = now, nextSequence
            self._windowEnd = now + RATE_WINDOW
        if history.size > self.flow.history:
            self._trim(sender is None or self.flow.blockPublishers)
        shared = self._shared
        if shared is not None and shared.held > shared.limit:
            self._overflow(now)
        return entry

    def _overflow(self, now: float) -> None:
        """
        The streams' histories hold more than their budget together: have
        their owner trim them, unless it tried too recently.
        """
        pool = self.pool
        assert pool is not None
        if now >= pool.pool.retryAt:
            pool.overflow()

    def _diskFull(self, where: str) -> None:
        """
        The log on disk had no room: say so (once a minute at most), pause
        the sources (their batches wait), and try again every
        L{FULL_RETRY} seconds.
        """
        if self.full:
            return
        self.full = True
        now = self.clock.seconds()
        if self._fullLogged is None or now - self._fullLogged >= FULL_LOG_SECONDS:
            self._fullLogged = now
            self.log.error(
                "stream {stream}: no room on disk ({where}): clients' messages are refused (DISK_FULL),"
                " sources paused, readers still served; trying again every {retry:g} s",
                stream=self.name,
                where=where,
                retry=FULL_RETRY,
            )
        for publisher, waits in list(self._publishers.items()):
            if waits:
                publisher.pauseProducing()
        self._retry = self.clock.callLater(FULL_RETRY, self._writeUnwritten)

    def _writeUnwritten(self) -> None:
        """
        Publish the sources' waiting batches, and let the sources go on
        once they are all written (or none waited).
        """
        self._retry = None
        unwritten, self._unwritten = self._unwritten, []
        for index, payloads in enumerate(unwritten):
            if self.publish(payloads) is None:
                self._unwritten.extend(unwritten[index + 1 :])
                self._retry = self.clock.callLater(FULL_RETRY, self._writeUnwritten)
                return
        self.full = False
        if unwritten:
            self.log.info("stream {stream}: there is room on disk again", stream=self.name)
        if not self.paused:
            for publisher, waits in list(self._publishers.items()):
                if waits:
                    publisher.resumeProducing()

    def gap(self, first: int, last: int) -> None:
        """
        Tell the subscribers that can hear it (C{seq} clients) that messages
        C{first} to C{last} of the cluster's stream never reached this node
        (C{last} < C{first}: an unknown number of them, in core mode).
        """
        for cursor in self.subscribers:
            if not cursor.closed:
                cursor.owner.streamGap(cursor, first, last)

    def addPublisher(self, publisher: IPushProducer, waits: bool) -> None:
        """
        Let the hub pause C{publisher} when the log is full of messages that
        subscribers that keep up still need; a publisher that C{waits} only
        is, the others only if C{blockPublishers}.
        """
        if publisher in self._publishers:
            return
        self._publishers[publisher] = waits
        if self.paused and self._pacing(waits):
            publisher.pauseProducing()

    def removePublisher(self, publisher: IPushProducer) -> None:
        self._publishers.pop(publisher, None)

    def _pacing(self, waits: bool) -> bool:
        return waits or self.flow.blockPublishers

    def cursorBehind(self, cursor: Cursor) -> None:
        """
        C{cursor}'s connection is full: it leaves the batches to the log.
        It kept up until now, so it is waited for C{stallTimeout} seconds
        from now, as if it had just taken what it was given: a reader that
        pauses for less than that (a scrolling terminal, a collector pause,
        a busy machine) is never cut for it.
        """
        if self._live.pop(cursor, 0) is None:
            self._deliveries = None
        self._behind[cursor] = None
        cursor.aboveSoftSince = None
        cursor.lastDrain = self.clock.seconds()
        self._waitingFor[cursor] = None
        if self._sweep is None:
            self._sweep = self.clock.callLater(SWEEP_INTERVAL, self._sweepBehind)

    def cursorDrained(self, cursor: Cursor) -> None:
        """
        C{cursor}'s connection took what it was given: it keeps up, and is
        waited for, for C{stallTimeout} seconds from now.
        """
        cursor.lastDrain = self.clock.seconds()
        if not cursor.live:
            self._waitingFor[cursor] = None
            if self.paused:
                self._relieve()

    def cursorCaughtUp(self, cursor: Cursor) -> None:
        """
        C{cursor} has sent the whole log: hand it the batches again.
        """
        self._behind.pop(cursor, None)
        self._waitingFor.pop(cursor, None)
        self._live[cursor] = None
        self._deliveries = None
        if self.paused:
            self._relieve()

    def cursorEvicted(self, cursor: Cursor) -> None:
        """
        C{cursor}'s position has left the log.
        """
        self._cut(cursor, Reason.EVICTED)

    def _cut(self, cursor: Cursor, reason: Reason) -> None:
        """
        Tell C{cursor}'s owner it is too slow: the owner abandons it, or,
        for L{Reason.EVICTED}, may move it on with L{Cursor.seek}.
        """
        cursor.owner.slowConsumer(cursor, reason, cursor.behind)

    def _trim(self, paced: bool) -> None:
        """
        The log is over its size: drop its oldest entries.  For a publisher
        that waits, keep those that a subscriber that keeps up still needs,
        and pause the publishers that wait until there is room.
        """
        limit = self.flow.history
        if not paced:
            self._evict(limit, None)
            return
        self._evict(limit, self._pin())
        # Not for the newest entry alone: no subscriber's reading frees it.
        if self.history.size > limit and len(self.history) > 1 and not self.paused:
            self._pause()

    def keepsUp(self, cursor: Cursor) -> bool:
        """
        Whether C{cursor} keeps up: it is caught up, or its connection took
        what it was given within the last C{stallTimeout} seconds.
        """
        if cursor.live:
            return True
        lastDrain = cursor.lastDrain
        return lastDrain is not None and lastDrain >= self.clock.seconds() - self.flow.stallTimeout

    def _pin(self) -> int | None:
        """
        The oldest entry a subscriber that keeps up still needs, if any;
        subscribers that stalled stop being waited for.
        """
        deadline = self.clock.seconds() - self.flow.stallTimeout
        waitingFor = self._waitingFor
        pin = None
        for cursor in list(waitingFor):
            lastDrain = cursor.lastDrain
            if lastDrain is None or lastDrain < deadline:
                del waitingFor[cursor]
            elif pin is None or cursor.index < pin:
                pin = cursor.index
        return pin

    def _evict(self, size: int, pin: int | None) -> None:
        """
        Drop the oldest entries until the log holds at most C{size} bytes,
        never entry C{pin} or newer, nor the newest.
        """
        history = self.history
        while history.size > size and len(history) > 1:
            if pin is not None and history.start >= pin:
                return
            history.evictOldest()

    def _pause(self) -> None:
        self.paused = True
        self.pauses += 1
        now = self.clock.seconds()
        if self._pauseLogged is None or now - self._pauseLogged >= PAUSE_LOG_SECONDS:
            self.log.info(
                "the history (--history {size} bytes) is full of messages a client that keeps up has not"
                " been sent yet: pausing {n} publisher(s) until it has ({pauses} pause(s) since the last"
                " such line)",
                size=self.flow.history,
                n=sum(map(self._pacing, self._publishers.values())),
                pauses=self.pauses - self._pausesLogged,
            )
            self._pauseLogged = now
            self._pausesLogged = self.pauses
        for publisher, waits in list(self._publishers.items()):
            if self._pacing(waits):
                publisher.pauseProducing()

    def _relieve(self) -> None:
        """
        While publishers are paused: drop what nobody waited for needs, and
        resume them once an eighth of the log is free, or nothing but the
        newest entry is left to drop (an entry larger than that eighth).
        """
        lowWater = self.flow.history - self.flow.history // 8
        self._evict(lowWater, self._pin())
        if self.history.size <= lowWater or len(self.history) == 1:
            self.paused = False
            for publisher, waits in list(self._publishers.items()):
                if self._pacing(waits) and not (waits and self.full):
                    publisher.resumeProducing()

    def _sweepBehind(self) -> None:
        """
        Cut the subscribers that are behind and out of the log or over a
        limit; stop waiting for those that stalled.
        """
        self._sweep = None
        flow = self.flow
        now = self.clock.seconds()
        start = self.history.start
        for cursor in list(self._behind):
            if cursor.closed or cursor.live:
                continue
            if cursor.index < start:
                self._cut(cursor, Reason.EVICTED)
                continue
            behind = cursor.behind
            if flow.maxBehind is not None and behind > flow.maxBehind:
                self._cut(cursor, Reason.MAX_PENDING)
            elif flow.softBehind is not None and behind > flow.softBehind:
                if cursor.aboveSoftSince is None:
                    cursor.aboveSoftSince = now
                elif now - cursor.aboveSoftSince >= flow.softSeconds:
                    self._cut(cursor, Reason.SOFT_PENDING)
            else:
                cursor.aboveSoftSince = None
        if self.paused:
            self._relieve()
        if self._behind:
            self._sweep = self.clock.callLater(SWEEP_INTERVAL, self._sweepBehind)

    def rate(self) -> float:
        """
        Messages published a second, over the last L{RATE_WINDOW} seconds
        or so (decaying while nothing is).
        """
        elapsed = self.clock.seconds() - self._windowStart
        if elapsed < RATE_WINDOW:
            return self._rate
        return (self.history.nextSequence - self._windowFirst) / elapsed

    def figures(self) -> dict[str, Any]:
        """
        This stream's figures, as C{GET /streams} shows them: its
        subscribers, messages a second, and the span of its history.
        """
        history = self.history
        oldest = history.oldestEntry()
        newest = history.nextSequence - 1
        return {
            "name": self.name,
            "subscribers": len(self._live) + len(self._behind),
            "rate": round(self.rate(), 3),
            "epoch": history.epoch.hex(),
            "oldest": newest + 1 if oldest is None else oldest[FIRST],
            "newest": newest,
            "history_bytes": history.size,
        }

    def framing(self, kind: object, make: Callable[[], Framing]) -> Framing:
        """
        This stream's framing of C{kind} (one that says the stream, for
        clients of several), made by C{make} the first time.
        """
        framing = self._framings.get(kind)
        if framing is None:
            framing = self._framings[kind] = make()
        return framing

    def shrink(self, size: int) -> None:
        """
        Drop the oldest entries until the log holds at most C{size} bytes,
        keeping those a subscriber that keeps up still needs (for the
        budget all streams share).
        """
        self._evict(size, self._pin())

    def idle(self, timeout: float) -> bool:
        """
        Whether nobody has subscribed, published or read here for
        C{timeout} seconds.
        """
        return (
            not self._live
            and not self._behind
            and not self._publishers
            and self.clock.seconds() - self.lastActivity >= timeout
        )

    def expireBefore(self, millisecond: int) -> None:
        """
        Drop the entries that came in before C{millisecond} (since 1970;
        C{--history-age}), but the newest, whoever still needs them.
        """
        history = self.history
        target = history.entryAt(millisecond)
        while history.start < target and len(history) > 1:
            history.evictOldest()

    def stop(self) -> None:
        """
        Stop the periodic look at the subscribers that are behind, and
        close the log.
        """
        self.history.close()
        for call in (self._sweep, self._retry):
            if call is not None and call.active():
                call.cancel()
        self._sweep = self._retry = None
