"""
One stream's log on disk: its directory of segments, its epoch, and its
publishers' window (see C{docs/durability.rst}).

Opening it recovers every segment (L{streamd.durable.recovery}) and maps
them (L{StoredSegment}); every entry published from then on is written to
the newest segment before it is fanned out, so a process that dies keeps
everything it sent anyone; the L{Syncer} makes it survive a power cut as
C{--fsync} says.  Segments are deleted whole, once the history no longer
holds any of their entries.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from struct import Struct
from typing import TYPE_CHECKING

from twisted.logger import Logger

from streamd.durable.files import readEpoch, replaceFile
from streamd.durable.recovery import recoverSegment
from streamd.durable.segment import (
    INDEX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    StoredSegment,
    encodeRecord,
    removeSegment,
    segmentName,
)
from streamd.fanout.history import DiskFull
from streamd.fanout.publishers import PublisherWindow

if TYPE_CHECKING:
    from streamd.durable.syncer import Syncer

FULL_ERRORS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG))
"""
What a write fails with when there is no room: the file system is full,
the user's quota is, or the file size limit (C{ulimit -f}) is reached.
"""

WINDOW_FILE = "publishers"
_WINDOW_HEAD = Struct(">Q")
_WINDOW_ITEM = Struct(">8sQQ")


class ActiveSegment:
    """
    The segment being written: its log and index files, and the index
    records not yet written (they follow the syncs, see L{Syncer}).

    @ivar size: bytes of its log.
    @ivar queued: bytes of index records made so far.
    @ivar indexed: of them, bytes written to the index file.
    """

    def __init__(self, path: str, first: int, entryBase: int, byteBase: int) -> None:
        self.path = path
        self.first = first
        self.entryBase = entryBase
        self.byteBase = byteBase
        self.logFd = os.open(path + LOG_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.indexFd = os.open(
            path + INDEX_SUFFIX, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644
        )
        self.size = 0
        self.queued = 0
        self.indexed = 0
        self.closed = False
        self._pending = bytearray()

    def write(self, header: bytes, data: bytes, first: int, time: int) -> None:
        """
        Append a record; on a failed write, leave the log as it was.

        @raise DiskFull: if there is no room for it.
        """
        offset = self.size
        total = len(header) + len(data)
        try:
            written = os.writev(self.logFd, (header, data))
            while written < total:
                written += os.write(self.logFd, (header + data)[written:])
        except OSError as e:
            os.ftruncate(self.logFd, offset)
            os.lseek(self.logFd, offset, os.SEEK_SET)
            if e.errno in FULL_ERRORS:
                raise DiskFull(f"{self.path}{LOG_SUFFIX}: {e.strerror}") from None
            raise
        self.size = offset + total
        self._pending += INDEX.pack(first, offset, time)
        self.queued += INDEX.size

    def writeIndex(self, upTo: int) -> None:
        """
        Write the index records made before C{upTo} bytes of them were.
        """
        count = upTo - self.indexed
        if count <= 0 or self.closed:
            return
        try:
            os.write(self.indexFd, self._pending[:count])
        except OSError:
            # The index is rebuilt from the log when the segment is opened.
            return
        del self._pending[:count]
        self.indexed = upTo

    def close(self) -> None:
        self.closed = True
        os.close(self.logFd)
        os.close(self.indexFd)


class StreamLog:
    """
    The segments of one stream in C{directory}.

    @ivar epoch: the stream's epoch, the same in every run.
    @ivar stored: the segments written by earlier runs, mapped.
    @ivar storedEntries: how many entries they hold.
    @ivar nextSequence: the sequence number after their last message.
    @ivar written: bytes written to the log since it began (the offset of
        the next record, counted over every segment).
    @ivar window: the publishers' window, as the log says it.
    @ivar active: the segment being written, once one is.
    """

    log = Logger()

    def __init__(self, directory: str, name: str, segmentBytes: int, syncer: Syncer) -> None:
        self.directory = directory
        self.name = name
        self.segmentBytes = segmentBytes
        self.syncer = syncer
        os.makedirs(directory, exist_ok=True)
        self.epoch = readEpoch(os.path.join(directory, "epoch"))
        self.stored: list[StoredSegment] = []
        self.storedEntries = 0
        self.written = 0
        self.nextSequence = 1
        self.active: ActiveSegment | None = None
        # Every segment on disk, oldest first: (entry number of its first
        # record, path without suffix).
        self._files: deque[tuple[int, str]] = deque()
        self._recover()
        self.window = self._readWindow()

    def _recover(self) -> None:
        names = sorted(n[: -len(LOG_SUFFIX)] for n in os.listdir(self.directory) if n.endswith(LOG_SUFFIX))
        for name in names:
            path = os.path.join(self.directory, name)
            recovered = recoverSegment(path, int(name))
            if recovered.cutAt is not None:
                self.log.warn(
                    "stream {stream}: {path} ends in a torn or corrupt record ({why}): cut it at byte {at};"
                    " every message before it is served",
                    stream=self.name,
                    path=path + LOG_SUFFIX,
                    why=recovered.why,
                    at=recovered.cutAt,
                )
            if recovered.count == 0:
                removeSegment(path)
                continue
            segment = StoredSegment(path, self.storedEntries, self.written)
            self.stored.append(segment)
            self._files.append((self.storedEntries, path))
            self.storedEntries += segment.count
            self.written += segment.size
            self.nextSequence = recovered.nextSequence

    def _readWindow(self) -> PublisherWindow:
        """
        The window as last saved, brought up to date from the records
        written after.
        """
        window = PublisherWindow()
        covered = 0
        try:
            with open(os.path.join(self.directory, WINDOW_FILE), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if len(data) >= _WINDOW_HEAD.size:
            (covered,) = _WINDOW_HEAD.unpack_from(data)
            for at in range(_WINDOW_HEAD.size, len(data) - _WINDOW_ITEM.size + 1, _WINDOW_ITEM.size):
                window.took(*_WINDOW_ITEM.unpack_from(data, at))
        for segment in self.stored:
            if segment.count and segment.first(segment.count - 1) > covered:
                for record in segment.records():
                    if record.number and record.first > covered:
                        window.took(record.identity, record.number, record.first + record.count - 1)
        return window

    def windowSnapshot(self) -> bytes:
        """
        The window as saved: the last sequence number it covers, then
        each identity's highest publish number and its sequence number.
        """
        items = [_WINDOW_ITEM.pack(identity, number, seq) for identity, number, seq in self.window]
        return _WINDOW_HEAD.pack(self.nextSequence - 1) + b"".join(items)

    def saveWindow(self, snapshot: bytes) -> None:
        """
        Replace the saved window with C{snapshot} (in the syncer's thread,
        once what it covers is synced).
        """
        replaceFile(os.path.join(self.directory, WINDOW_FILE), snapshot)

    def write(
        self,
        entryNumber: int,
        first: int,
        count: int,
        data: bytes,
        framing: int,
        time: int,
        identity: bytes,
        number: int,
    ) -> None:
        """
        Append entry number C{entryNumber} to the newest segment, or to a
        new one when that one is full.

        @raise DiskFull: if there is no room for it; nothing was written.
        """
        active = self.active
        if active is None or active.size >= self.segmentBytes:
            active = self._roll(first, entryNumber)
        active.write(encodeRecord(first, count, data, framing, time, identity, number), data, first, time)
        self.written = active.byteBase + active.size
        self.nextSequence = first + count
        self.syncer.dirty(self)

    def _roll(self, first: int, entryNumber: int) -> ActiveSegment:
        """
        Start a new segment with message C{first}; the one before is
        synced and closed by the syncer, and the window saved after it.
        """
        old = self.active
        path = os.path.join(self.directory, segmentName(first))
        try:
            self.active = ActiveSegment(path, first, entryNumber, self.written)
        except OSError as e:
            if e.errno in FULL_ERRORS:
                raise DiskFull(f"{path}{LOG_SUFFIX}: {e.strerror}") from None
            raise
        self._files.append((entryNumber, path))
        if old is not None:
            old.writeIndex(old.queued)
            self.syncer.retire(self, old, self.windowSnapshot())
        return self.active

    def release(self, start: int) -> tuple[int, int | None]:
        """
        Let go of the segments all of whose entries are older than entry
        number C{start}, which the history no longer holds (never the one
        being written): the syncer's thread deletes their files, since
        unlinking a large file that the page cache holds takes milliseconds.

        @return: how many were let go of, and the entry number from which
            the next can go, if any can.
        """
        files = self._files
        doomed = []
        while len(files) > 1 and files[1][0] <= start:
            doomed.append(files.popleft()[1])
        if doomed:
            self.syncer.remove(doomed)
        return len(doomed), files[1][0] if len(files) > 1 else None

    def boundary(self) -> int | None:
        """
        The entry number of the second segment's first record, if there are
        two: once the history starts there, the first can go.
        """
        files = self._files
        return files[1][0] if len(files) > 1 else None

    def close(self) -> None:
        """
        Write the index, sync as the policy says, close the files and save
        the window (at shutdown).
        """
        active, self.active = self.active, None
        if active is not None:
            active.writeIndex(active.queued)
            self.syncer.finish(active)
        replaceFile(os.path.join(self.directory, WINDOW_FILE), self.windowSnapshot())


__all__ = ["StreamLog"]
