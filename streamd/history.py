"""
The history: one bounded, in-memory log of everything the hub published.

Every message gets a sequence number (from 1), and every batch of messages
published together (a read's worth of frames, or a source's lines) is one
L{Entry}, appended once and shared by every subscriber: a subscriber is only a
position in the log (see L{streamd.cursor}), so a slow one costs no copy.
Entries leave the log only from its old end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from streamd.framing import INT32, Framing, Payload


class Entry:
    """
    Messages published together: their bytes in the framing they came in,
    and, made once when first asked for, in the other framings.

    @ivar first: the sequence number of the first message.
    @ivar count: how many messages.
    @ivar data: the messages framed with L{framing}.
    @ivar offset: where the entry starts in the log, in bytes of C{data}
        since the daemon started.
    @ivar sender: the L{serial<streamd.cursor.Cursor.serial>} of the
        subscriber that published it, which does not get it back; 0 for the
        daemon's own sources.  A number, not the subscriber, so that the log
        does not keep a closed connection alive.
    """

    __slots__ = ("first", "count", "data", "framing", "offset", "sender", "_encodings")

    def __init__(
        self, first: int, count: int, data: bytes, framing: Framing, offset: int, sender: int
    ) -> None:
        self.first = first
        self.count = count
        self.data = data
        self.framing = framing
        self.offset = offset
        self.sender = sender
        self._encodings: dict[Framing, bytes] | None = None

    @property
    def last(self) -> int:
        """
        The sequence number of the last message.
        """
        return self.first + self.count - 1

    def payloads(self) -> list[Payload]:
        """
        The messages, decoded again from L{data}.
        """
        payloads, _ = self.framing.decoder(self.framing.maxLength).feed(self.data)
        return payloads

    def encoded(self, framing: Framing) -> tuple[bytes, int]:
        """
        The messages framed with C{framing}, and how many bytes that made
        that were not held before (0 once made).
        """
        if framing is self.framing:
            return self.data, 0
        encodings = self._encodings
        if encodings is None:
            encodings = self._encodings = {}
        data = encodings.get(framing)
        if data is not None:
            return data, 0
        data = encodings[framing] = framing.encodeEntry(self.payloads(), self.first)
        return data, len(data)


class History:
    """
    The log: entries numbered from 0 in the order they were appended, of
    which those from L{start} to L{end} are still held.

    @ivar size: bytes held, every framing's encoding counted.
    @ivar nextSequence: the sequence number the next message will get.
    @ivar epoch: 8 bytes that name this log: random, chosen anew each time
        the daemon starts, or a cluster's (L{adoptEpoch}).  A sequence number
        means something only with its epoch.
    @ivar formerEpochs: epochs this log had before it held anything, whose
        numbers (none) are this epoch's.
    """

    def __init__(self, epoch: bytes | None = None) -> None:
        self.epoch = os.urandom(8) if epoch is None else epoch
        self.formerEpochs: set[bytes] = set()
        self._entries: list[Entry | None] = []
        # _entries[i] is entry number _base + i; those before _first are gone.
        self._base = 0
        self._first = 0
        self.size = 0
        self.nextSequence = 1
        self._nextOffset = 0

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

    def numbers(self, epoch: bytes) -> bool:
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
        if epoch != self.epoch:
            self.formerEpochs.add(self.epoch)
            self.epoch = epoch

    def append(
        self, data: bytes, framing: Framing, count: int, sender: int = 0, first: int | None = None
    ) -> Entry:
        """
        Add C{count} messages, framed with C{framing} as C{data}, numbered
        from the next sequence number, or from C{first}, which must not be
        lower (a cluster's stream numbers them; a higher one leaves a hole
        of messages this log never had).
        """
        if first is None:
            first = self.nextSequence
        elif first < self.nextSequence:
            raise ValueError(f"message {first} is older than the next sequence number {self.nextSequence}")
        entry = Entry(first, count, data, framing, self._nextOffset, sender)
        self._entries.append(entry)
        self.nextSequence = first + count
        self._nextOffset += len(data)
        self.size += len(data)
        return entry

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

    def encoded(self, entry: Entry, framing: Framing) -> bytes:
        """
        C{entry}'s messages framed with C{framing}, counted in L{size}.
        """
        data, made = entry.encoded(framing)
        if made:
            self.size += made
        return data

    def entrySize(self, entry: Entry) -> int:
        """
        Bytes C{entry} holds, every encoding counted.
        """
        encodings = entry._encodings
        return len(entry.data) + (sum(map(len, encodings.values())) if encodings else 0)

    def evictOldest(self) -> Entry:
        """
        Drop the oldest entry held, and return it.
        """
        entries = self._entries
        entry = entries[self._first]
        assert entry is not None
        entries[self._first] = None
        self._first += 1
        self.size -= self.entrySize(entry)
        if self._first >= 1024 and self._first * 2 >= len(entries):
            del entries[: self._first]
            self._base += self._first
            self._first = 0
        return entry

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
            if self[middle].last < sequence:
                low = middle + 1
            else:
                high = middle
        return low
