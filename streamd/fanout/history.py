"""
The history: one bounded, in-memory log of everything the hub published.

Every message gets a sequence number (from 1), and every batch of messages
published together (a read's worth of frames, or a source's lines) is one
L{Entry}, appended once and shared by every subscriber: a subscriber is only a
position in the log (see L{streamd.fanout.cursor}), so a slow one costs no copy.
Entries leave the log only from its old end.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from twisted.internet.defer import Deferred

from streamd.fanout.publishers import PublisherWindow, identityOf
from streamd.framing import INT32, Framing, Payload

Entry = tuple[int, int, bytes, int, int, int]
"""
Messages published together: C{(first, count, data, framing, offset,
sender)}, read with the indexes below.  A plain tuple of numbers and bytes,
not a class, so that Python's cycle collector stops tracking it after its
first collection: the log holds up to millions of entries, and a full
collection would otherwise walk every one, stalling the stream for tens of
milliseconds.
"""

FIRST: Final = 0
"""
An entry's sequence number of its first message.
"""
COUNT: Final = 1
"""
How many messages an entry holds.
"""
DATA: Final = 2
"""
An entry's messages, framed as they came in.
"""
FRAMING: Final = 3
"""
Which of the log's framings L{DATA} is in (see L{History.framingOf}).
"""
OFFSET: Final = 4
"""
Where an entry starts in the log, in bytes of L{DATA} since the daemon
started.
"""
SENDER: Final = 5
"""
The L{serial<streamd.fanout.cursor.Cursor.serial>} of the subscriber that published
an entry, which does not get it back; 0 for the daemon's own sources.  A
number, not the subscriber, so that the log does not keep a closed
connection alive.
"""


class DiskFull(Exception):
    """
    A history kept on disk has no room for an entry (the file system, a
    quota or the file size limit is full): the entry is not in the
    history.  Its str says where.
    """


@dataclass
class HistoryPool:
    """
    The bytes several histories hold together (the named streams'), and
    their bound.

    @ivar retryAt: when their owner may try again to trim them under the
        C{limit}, after a trim that could not (what subscribers still need
        is kept), so that it is not tried again at every message.
    """

    limit: int
    held: int = 0
    retryAt: float = 0.0


def lastOf(entry: Entry) -> int:
    """
    The sequence number of C{entry}'s last message.
    """
    return entry[FIRST] + entry[COUNT] - 1


class History:
    """
    The log: entries numbered from 0 in the order they were appended, of
    which those from L{start} to L{end} are still held.

    @ivar size: bytes of the messages held, as they were published.
    @ivar encodingBytes: bytes of the encodings made for subscribers of the
        other framings (L{encoded}), a cache apart from L{size}: a reader
        that resumes from the start in a framing of its own does not push
        messages out of the log, and the cache is bounded by
        L{encodingBudget}, its oldest encodings made again when needed.
    @ivar nextSequence: the sequence number the next message will get.
    @ivar epoch: 8 bytes that name this log: random, chosen anew each time
        the daemon starts, or a cluster's (L{adoptEpoch}).  A sequence number
        means something only with its epoch.
    @ivar formerEpochs: epochs this log had before it held anything, whose
        numbers (none) are this epoch's.
    @ivar awaitingEpoch: whether a cluster will give this log its epoch
        (L{adoptEpoch}) and has not yet: until then no epoch a client
        names can be judged another's.
    @ivar publishers: the publish numbers taken from clients that number
        their messages (see L{streamd.fanout.publishers}).
    """

    def __init__(
        self, epoch: bytes | None = None, encodingBudget: int = 32 << 20, pool: HistoryPool | None = None
    ) -> None:
        self.epoch = os.urandom(8) if epoch is None else epoch
        self.formerEpochs: set[bytes] = set()
        self.awaitingEpoch = False
        self._entries: list[Entry | None] = []
        # _entries[i] is entry number _base + i; those before _first are gone.
        self._base = 0
        self._first = 0
        # The framings entries came in, by the number each entry names, and
        # the encodings made for subscribers of the other framings, by
        # (first sequence, framing number).
        self._framings: list[Framing] = []
        self._numbers: dict[Framing, int] = {}
        self._encodings: dict[tuple[int, int], bytes] = {}
        self.encodingBytes = 0
        self.encodingBudget = encodingBudget
        self.pool = pool
        self.size = 0
        self.nextSequence = 1
        self._nextOffset = 0
        self.publishers = PublisherWindow()
        # When entries came in: (millisecond, number of the first entry of
        # that millisecond), one mark per millisecond that saw any.
        self._marks: deque[tuple[int, int]] = deque()
        # The first time (in seconds) of the millisecond after the newest
        # mark's: an entry that comes in earlier needs no mark, and telling
        # so costs one comparison, not a conversion.
        self._nextMarkAt = float("-inf")

    @property
    def start(self) -> int:
        """
        The number of the oldest entry held.
        """
        return self._base + self._first

    @property
    def end(self) -> int:
        """
        The number the next entry will get.
        """
        return self._base + len(self._entries)

    @property
    def endOffset(self) -> int:
        """
        Where the next entry will start, in bytes since the daemon started.
        """
        return self._nextOffset

    def __len__(self) -> int:
        return len(self._entries) - self._first

    def ownsEpoch(self, epoch: bytes) -> bool:
        """
        Whether sequence numbers of C{epoch} are this log's.
        """
        return epoch == self.epoch or epoch in self.formerEpochs

    def adoptEpoch(self, epoch: bytes) -> None:
        """
        Take a cluster's epoch, before the first message: the numbers come
        from the cluster from then on (see L{append}'s C{first}).
        """
        assert self.nextSequence == 1, "a log that holds messages keeps its epoch"
        self.awaitingEpoch = False
        if epoch != self.epoch:
            self.formerEpochs.add(self.epoch)
            self.epoch = epoch

    def append(
        self,
        data: bytes,
        framing: Framing,
        count: int,
        sender: int = 0,
        first: int | None = None,
        time: float = 0.0,
        number: int = 0,
    ) -> Entry:
        """
        Add C{count} (at least one) messages, framed with C{framing} as C{data}, numbered
        from the next sequence number, or from C{first}, which must not be
        lower (a cluster's stream numbers them; a higher one leaves a hole
        of messages this log never had).

        @param time: when they came in (seconds since 1970), for a client
            that starts at a time; 0 for none.
        @param number: the publish number of the last of them, for a
            C{sender} that numbers its messages (see L{publishers}).
        """
        if first is None:
            first = self.nextSequence
        elif first < self.nextSequence:
            raise ValueError(f"message {first} is older than the next sequence number {self.nextSequence}")
        if time >= self._nextMarkAt:
            self._mark(time)
        if number and sender < 0:
            self.publishers.took(identityOf(sender), number, first + count - 1)
        code = self._numbers.get(framing)
        if code is None:
            code = self._number(framing)
        entry = (first, count, data, code, self._nextOffset, sender)
        self._entries.append(entry)
        self.nextSequence = first + count
        size = len(data)
        self._nextOffset += size
        self.size += size
        if self.pool is not None:
            self.pool.held += size
        return entry

    def _mark(self, time: float) -> None:
        """
        Mark the entry about to be appended as the first of the
        millisecond of C{time}, if no entry came in that millisecond yet.
        """
        millisecond = int(time * 1000)
        marks = self._marks
        if marks and millisecond <= marks[-1][0]:
            return
        marks.append((millisecond, self._base + len(self._entries)))
        # Just below the first time of the next millisecond: every time
        # under this one is in this millisecond or earlier (int(t * 1000),
        # rounding included), and the few above it that are not yet in the
        # next are told apart here, by the conversion.
        self._nextMarkAt = math.nextafter((millisecond + 1) / 1000, -math.inf)

    def appendPayloads(self, payloads: Sequence[Payload], sender: int = 0) -> Entry:
        """
        Add C{payloads}, framed once with L{INT32}.
        """
        return self.append(INT32.encodeMany(payloads), INT32, len(payloads), sender)

    def __getitem__(self, number: int) -> Entry:
        """
        Entry number C{number}, which must be held.
        """
        entry = self._entries[number - self._base]
        assert entry is not None and number >= self._base, f"entry {number} is not held"
        return entry

    def framingOf(self, entry: Entry) -> Framing:
        """
        The framing of C{entry}'s L{DATA}.
        """
        return self._framings[entry[FRAMING]]

    def payloads(self, entry: Entry) -> list[Payload]:
        """
        C{entry}'s messages, decoded again from its L{DATA}.
        """
        return self.framingOf(entry).split(entry[DATA], entry[COUNT])

    def encoded(self, entry: Entry, framing: Framing, payloads: Sequence[Payload] | None = None) -> bytes:
        """
        C{entry}'s messages framed with C{framing}: made when first asked
        for, and kept for the other subscribers of that framing while the
        cache of encodings has room (see L{encodingBytes}).

        @param payloads: C{entry}'s messages, if the caller has them (the
            hub, as it publishes them), so they are not cut from its
            L{DATA} again.
        """
        number = self._numbers.get(framing)
        if number == entry[FRAMING]:
            return entry[DATA]
        if number is None:
            number = self._number(framing)
        key = (entry[FIRST], number)
        data = self._encodings.get(key)
        if data is None:
            data = framing.reframe(entry[DATA], self._framings[entry[FRAMING]], entry[FIRST], payloads)
            if data is None:
                if payloads is None:
                    payloads = self.payloads(entry)
                data = framing.encodeEntry(payloads, entry[FIRST])
            self._encodings[key] = data
            self.encodingBytes += len(data)
            if self.encodingBytes > self.encodingBudget:
                self._shedEncodings()
        return data

    def _shedEncodings(self) -> None:
        """
        Forget the encodings made longest ago, to three quarters of the
        budget: they are made again if a subscriber still needs them.
        """
        encodings = self._encodings
        floor = self.encodingBudget * 3 // 4
        while self.encodingBytes > floor and encodings:
            self.encodingBytes -= len(encodings.pop(next(iter(encodings))))

    def evictOldest(self) -> Entry:
        """
        Drop the oldest entry held, and return it.
        """
        entries = self._entries
        entry = entries[self._first]
        assert entry is not None
        entries[self._first] = None
        self._first += 1
        self.size -= len(entry[DATA])
        if self.pool is not None:
            self.pool.held -= len(entry[DATA])
        if self._encodings:
            self._dropEncodings(entry)
        marks = self._marks
        if len(marks) > 1 and marks[1][1] <= self.start:
            marks.popleft()
        if self._first >= 1024 and self._first * 2 >= len(entries):
            del entries[: self._first]
            self._base += self._first
            self._first = 0
        return entry

    def _dropEncodings(self, entry: Entry) -> None:
        """
        Forget the encodings made of C{entry}, which leaves the log.
        """
        for number in range(len(self._framings)):
            made = self._encodings.pop((entry[FIRST], number), None)
            if made is not None:
                self.encodingBytes -= len(made)

    def entryAt(self, millisecond: int) -> int:
        """
        The number of the first entry held that came in at or after
        C{millisecond} (since 1970), or L{end} if none did.
        """
        marks = self._marks
        low, high = 0, len(marks)
        while low < high:
            middle = (low + high) // 2
            if marks[middle][0] < millisecond:
                low = middle + 1
            else:
                high = middle
        return max(marks[low][1], self.start) if low < len(marks) else self.end

    def whenDurable(self) -> Deferred[None] | None:
        """
        Fires once what the log holds now is as durable as an acknowledged
        message must be; C{None} if it already is (in memory: at once).
        """
        return None

    def close(self) -> None:
        """
        Release what the log holds open: nothing, in memory.
        """

    def _number(self, framing: Framing) -> int:
        number = self._numbers.get(framing)
        if number is None:
            number = self._numbers[framing] = len(self._framings)
            self._framings.append(framing)
        return number

    def oldestEntry(self) -> Entry | None:
        """
        The oldest entry held, if any.
        """
        if self._first == len(self._entries):
            return None
        return self._entries[self._first]

    def find(self, sequence: int) -> int:
        """
        The number of the entry that holds message C{sequence}, or L{end}
        if it is newer than every message held, or L{start} if older.
        """
        low, high = self.start, self.end
        while low < high:
            middle = (low + high) // 2
            if lastOf(self[middle]) < sequence:
                low = middle + 1
            else:
                high = middle
        return low
