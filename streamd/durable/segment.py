"""
One segment of a stream's log on disk: a file of records and a file of
their index (C{docs/durability.rst} specifies both).

A record is a 48-byte header, then the entry's messages as they were framed
when published.  The header holds the length of that body, a CRC-32 of the
rest of the header and the body, the entry's first sequence number and
count, its framing, its receive time, and the identity and publish number
of the client that published it.  The index holds, for each record, its
first sequence number, where it starts in the file, and its receive time:
24 bytes, so that a log of any size is opened by mapping these files, not by
reading them.
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from struct import Struct

from streamd.fanout.history import Entry
from streamd.fanout.publishers import senderOf

HEADER = Struct(">IIQIBBHQ8sQ")
"""
A record's header: body length, CRC-32 (of what follows it, header and
body), first sequence number, count, framing code, flags, reserved, receive
time (milliseconds since 1970), publisher identity, publish number.
"""

_LENGTH_AND_CRC = Struct(">II")
_REST = Struct(">QIBBHQ8sQ")
"""
A header in two parts: what the checksum covers (L{_REST}, bytes 8..47)
is packed once, and the two words before it after.
"""

INDEX = Struct(">QQQ")
"""
An index record: first sequence number, offset of the record in the log
file, receive time (milliseconds).
"""

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".idx"


class TornRecord(Exception):
    """
    The record at an offset of a log file is incomplete or fails its
    checksum: what is there is a torn or corrupt tail.
    """


@dataclass(frozen=True)
class Record:
    """
    What a record's header says.
    """

    length: int
    first: int
    count: int
    framing: int
    time: int
    identity: bytes
    number: int


def segmentName(first: int) -> str:
    """
    The name of the files of the segment whose first message is C{first},
    without their suffix: names sort in the log's order.
    """
    return f"{first:020d}"


def encodeRecord(
    first: int, count: int, data: bytes, framing: int, time: int, identity: bytes, number: int
) -> bytes:
    """
    The header of the record of C{data} (the body follows it).
    """
    rest = _REST.pack(first, count, framing, 0, 0, time, identity, number)
    return _LENGTH_AND_CRC.pack(len(data), zlib.crc32(data, zlib.crc32(rest))) + rest


def readRecord(log: bytes | mmap.mmap, offset: int, size: int) -> Record:
    """
    The record at C{offset} of a log of C{size} bytes, checked.

    @raise TornRecord: if it ends past C{size} or fails its checksum.
    """
    if size - offset < HEADER.size:
        raise TornRecord(f"a {size - offset}-byte header")
    length, crc, first, count, framing, _, _, time, identity, number = HEADER.unpack_from(log, offset)
    end = offset + HEADER.size + length
    if end > size or count == 0:
        raise TornRecord(f"a record of {length} bytes and {count} messages where {size - offset} are left")
    body = memoryview(log)[offset + HEADER.size : end]
    try:
        if zlib.crc32(body, zlib.crc32(memoryview(log)[offset + 8 : offset + HEADER.size])) != crc:
            raise TornRecord("a checksum that does not match")
    finally:
        body.release()
    return Record(length, first, count, framing, time, identity, number)


class StoredSegment:
    """
    A segment written before this run, mapped read-only: its entries are
    made from the mapping when asked for, never all at once.

    @ivar entryBase: the entry number (in the history) of its first record.
    @ivar byteBase: the history offset of its first byte.
    @ivar count: how many records it holds.
    @ivar dataBytes: the bytes of their messages.
    """

    def __init__(self, path: str, entryBase: int, byteBase: int) -> None:
        self.path = path
        self.entryBase = entryBase
        self.byteBase = byteBase
        with open(path + LOG_SUFFIX, "rb") as log, open(path + INDEX_SUFFIX, "rb") as index:
            self.size = os.fstat(log.fileno()).st_size
            self._log = mmap.mmap(log.fileno(), 0, prot=mmap.PROT_READ)
            self._index = mmap.mmap(index.fileno(), 0, prot=mmap.PROT_READ)
        self._view = memoryview(self._log)
        self.count = len(self._index) // INDEX.size
        self.dataBytes = self.size - self.count * HEADER.size

    def close(self) -> None:
        """
        Let go of the mappings (the files are deleted): they are unmapped
        once no entry made from them is still in use.
        """
        self._view.release()
        del self._log, self._index

    def first(self, i: int) -> int:
        """
        The first sequence number of record C{i}.
        """
        return INDEX.unpack_from(self._index, i * INDEX.size)[0]  # type: ignore[no-any-return]

    def time(self, i: int) -> int:
        """
        The receive time of record C{i}, in milliseconds.
        """
        return INDEX.unpack_from(self._index, i * INDEX.size)[2]  # type: ignore[no-any-return]

    def entry(self, i: int) -> Entry:
        """
        Record C{i} as a history entry, its data a view of the mapping.
        """
        first, offset, _ = INDEX.unpack_from(self._index, i * INDEX.size)
        length, _, _, count, framing, _, _, _, identity, _ = HEADER.unpack_from(self._log, offset)
        start = offset + HEADER.size
        sender = senderOf(identity)
        return (first, count, self._view[start : start + length], framing, self.byteBase + offset, sender)  # type: ignore[return-value]

    def records(self) -> list[Record]:
        """
        The headers of its records (for the publishers' window of the
        newest segments), read from the file rather than the mapping, so
        that the pages read do not stay in the daemon's memory.
        """
        out = []
        with open(self.path + LOG_SUFFIX, "rb") as log:
            fd = log.fileno()
            for i in range(self.count):
                offset = INDEX.unpack_from(self._index, i * INDEX.size)[1]
                fields = HEADER.unpack(os.pread(fd, HEADER.size, offset))
                length, _, first, count, framing, _, _, time, identity, number = fields
                out.append(Record(length, first, count, framing, time, identity, number))
        return out


def removeSegment(path: str) -> None:
    """
    Delete the files of the segment at C{path} (without suffix), those of
    them that are there.
    """
    for suffix in (LOG_SUFFIX, INDEX_SUFFIX):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def bisect(count: int, key: Callable[[int], int], target: int) -> int:
    """
    The first of C{count} positions whose C{key(i)} is at least C{target}
    (C{count} if none is), for keys that never decrease.
    """
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if key(middle) < target:
            low = middle + 1
        else:
            high = middle
    return low
