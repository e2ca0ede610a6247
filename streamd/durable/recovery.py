"""
Opening a segment written by an earlier run, which may have stopped in the
middle of a write (C{kill -9}, a power cut): its index is checked at its
end, the records after the last indexed one are read and checked one by one,
and a torn or corrupt tail is cut off.  Only that tail is read: the rest of
the segment was indexed after it was written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from streamd.durable.segment import HEADER, INDEX, INDEX_SUFFIX, LOG_SUFFIX, Record, TornRecord, readRecord


@dataclass(frozen=True)
class Recovered:
    """
    What opening a segment found: its records, the sequence number after
    its last message, and, if its tail was cut off, where and why.
    """

    count: int
    nextSequence: int
    cutAt: int | None = None
    why: str = ""


def recoverSegment(path: str, first: int) -> Recovered:
    """
    Check the segment at C{path} (without suffix), whose first message is
    C{first}: keep the index records up to the last that points at a good
    record, index the good records after it, and cut the log and the index
    after the last good one.
    """
    logFd = os.open(path + LOG_SUFFIX, os.O_RDWR)
    indexFd = os.open(path + INDEX_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(logFd).st_size
        count = os.fstat(indexFd).st_size // INDEX.size
        offset, nextSequence = 0, first
        while count:
            _, at, _ = INDEX.unpack(os.pread(indexFd, INDEX.size, (count - 1) * INDEX.size))
            record = _goodRecord(logFd, at, size)
            if record is not None:
                offset, nextSequence = at + HEADER.size + record.length, record.first + record.count
                break
            count -= 1
        tail = os.pread(logFd, size - offset, offset)
        added = bytearray()
        position = 0
        cut: int | None = None
        why = ""
        while position < len(tail):
            try:
                record = readRecord(tail, position, len(tail))
            except TornRecord as e:
                cut, why = offset + position, str(e)
                break
            if record.first < nextSequence:
                cut, why = offset + position, f"message {record.first} after {nextSequence - 1}"
                break
            added += INDEX.pack(record.first, offset + position, record.time)
            nextSequence = record.first + record.count
            position += HEADER.size + record.length
        if cut is not None:
            os.ftruncate(logFd, cut)
        os.ftruncate(indexFd, count * INDEX.size)
        os.pwrite(indexFd, added, count * INDEX.size)
    finally:
        os.close(logFd)
        os.close(indexFd)
    return Recovered(count + len(added) // INDEX.size, nextSequence, cut, why)


def _goodRecord(fd: int, at: int, size: int) -> Record | None:
    """
    The record at C{at} of the log C{fd} of C{size} bytes, if it is whole
    and passes its checksum.
    """
    head = os.pread(fd, HEADER.size, at)
    if len(head) < HEADER.size:
        return None
    data = head + os.pread(fd, HEADER.unpack(head)[0], at + HEADER.size)
    try:
        return readRecord(data, 0, min(len(data), size - at))
    except TornRecord:
        return None
