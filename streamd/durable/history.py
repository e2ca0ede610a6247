"""
A history whose log is on disk (C{--data-dir}): the entries of earlier runs
are read from the mapped segments when asked for, and every entry appended
is written to the log before it is fanned out.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from streamd.durable.log import StreamLog
from streamd.durable.segment import StoredSegment, bisect
from streamd.durable.syncer import FsyncPolicy
from streamd.fanout.history import COUNT, DATA, FIRST, Entry, History, HistoryPool
from streamd.fanout.publishers import NO_IDENTITY, identityOf
from streamd.framing import ASCII10, INT32, Framing

_CODES = (INT32, ASCII10)
"""
The framings a record's framing code names, by code: the log's first two
framing numbers.  Entries of any other framing are written as int32.
"""


class DurableHistory(History):
    """
    A L{History} over a L{StreamLog}: entries numbered below
    C{log.storedEntries} are the stored ones, made from the mapping; the
    others are held in memory, as in any history, and written to the log.
    Its epoch and numbers go on from the earlier runs'.
    """

    def __init__(
        self, log: StreamLog, encodingBudget: int = 32 << 20, pool: HistoryPool | None = None
    ) -> None:
        super().__init__(log.epoch, encodingBudget, pool)
        for framing in _CODES:
            self._number(framing)
        self.log = log
        self.publishers = log.window
        self._stored = log.stored
        self._bases = [segment.entryBase for segment in self._stored]
        self._storedStart = 0
        self._storedEnd = self._base = log.storedEntries
        self.nextSequence = log.nextSequence
        self._nextOffset = log.written
        self.size = sum(segment.dataBytes for segment in self._stored)
        if pool is not None:
            pool.held += self.size
        self._nextRelease = self._release()

    @property
    def start(self) -> int:
        if self._storedStart < self._storedEnd:
            return self._storedStart
        return self._base + self._first

    def __len__(self) -> int:
        return self._storedEnd - self._storedStart + len(self._entries) - self._first

    def __getitem__(self, number: int) -> Entry:
        if number >= self._storedEnd:
            return super().__getitem__(number)
        segment = self._segmentOf(number)
        return segment.entry(number - segment.entryBase)

    def _segmentOf(self, number: int) -> StoredSegment:
        return self._stored[bisect(len(self._bases), self._bases.__getitem__, number + 1) - 1]

    def oldestEntry(self) -> Entry | None:
        if self._storedStart < self._storedEnd:
            return self[self._storedStart]
        return super().oldestEntry()

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
        Write the entry to the log, then hold it as any history does.

        @raise streamd.durable.log.DiskFull: if the log has no room for it;
            the history is then as it was.
        """
        code = self._numbers.get(framing)
        if code is None or code >= len(_CODES):
            data, framing, code = INT32.encodeMany(framing.split(data, count)), INT32, 0
        if first is None:
            first = self.nextSequence
        identity = NO_IDENTITY if sender >= 0 else identityOf(sender)
        entryNumber = self._base + len(self._entries)
        self.log.write(entryNumber, first, count, data, code, int(time * 1000), identity, number)
        return History.append(self, data, framing, count, sender, first, time, number)

    def evictOldest(self) -> Entry:
        if self._storedStart < self._storedEnd:
            entry = self[self._storedStart]
            self._storedStart += 1
            size = len(entry[DATA])
            self.size -= size
            if self.pool is not None:
                self.pool.held -= size
            if self._encodings:
                self._dropEncodings(entry)
        else:
            entry = super().evictOldest()
        following = self._nextRelease
        if following is None:
            # A segment may have begun since.
            following = self._nextRelease = self.log.boundary()
        if following is not None and self.start >= following:
            self._nextRelease = self._release()
        return entry

    def _release(self) -> int | None:
        """
        Delete the segments the history holds nothing of any more, and
        unmap the stored ones among them.

        @return: the entry number from which the next can go, if any can.
        """
        deleted, following = self.log.release(self.start)
        for _ in range(min(deleted, len(self._stored))):
            self._stored.pop(0).close()
            self._bases.pop(0)
        return following

    def entryAt(self, millisecond: int) -> int:
        stored = self._stored
        if self._storedStart < self._storedEnd and millisecond <= stored[-1].time(stored[-1].count - 1):
            index = bisect(len(stored), lambda i: stored[i].time(stored[i].count - 1), millisecond)
            segment = stored[index]
            number = segment.entryBase + bisect(segment.count, segment.time, millisecond)
            return max(number, self._storedStart)
        return max(super().entryAt(millisecond), self._storedEnd)

    def find(self, sequence: int) -> int:
        """
        As L{History.find}, searching the stored segments by their index.
        """
        stored = self._stored
        if self._storedStart < self._storedEnd:
            last = stored[-1]
            entry = last.entry(last.count - 1)
            if sequence <= entry[FIRST] + entry[COUNT] - 1:
                index = bisect(len(stored), lambda i: stored[i].first(0), sequence + 1) - 1
                segment = stored[max(index, 0)]
                number = segment.entryBase + bisect(segment.count, segment.first, sequence + 1) - 1
                number = max(number, segment.entryBase)
                found = self[number]
                if found[FIRST] + found[COUNT] - 1 < sequence:
                    number += 1
                return max(number, self._storedStart)
        return super().find(sequence)

    def whenDurable(self) -> Deferred[None] | None:
        if self.log.syncer.policy is not FsyncPolicy.ALWAYS:
            return None
        return self.log.syncer.whenDurable(self.log)

    def close(self) -> None:
        self.log.close()
