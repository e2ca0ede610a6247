"""
The data directory (C{--data-dir}): a directory per stream, the places of
the C{file:} sources, the syncer, and a lock that keeps a second daemon out.

::

    DATA_DIR/lock
    DATA_DIR/streams/NAME/epoch
    DATA_DIR/streams/NAME/00000000000000000001.log (and .idx, ...)
    DATA_DIR/streams/NAME/publishers
    DATA_DIR/sources/STREAM.KEY
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from streamd._errors import ConfigError
from streamd.durable.history import DurableHistory
from streamd.durable.log import StreamLog
from streamd.durable.places import SourcePlace
from streamd.durable.syncer import FsyncPolicy, Syncer
from streamd.fanout.history import HistoryPool
from streamd.names import BadName, checkName

MiB = 1024 * 1024


def segmentBytes(history: int) -> int:
    """
    The size at which a stream of C{history} bytes starts a new segment:
    an eighth of it (so that deleting the oldest whole frees an eighth),
    between 1 MiB and 64 MiB.
    """
    return min(max(history // 8, MiB), 64 * MiB)


class DataDir:
    """
    The daemon's data directory at C{path}, locked while it runs.

    @raise ConfigError: if it cannot be made or another daemon holds it.
    """

    def __init__(
        self, reactor: Any, path: str, fsync: str, inThread: Callable[..., Deferred[None]] | None = None
    ) -> None:
        self.path = os.path.abspath(path)
        self.streamsPath = os.path.join(self.path, "streams")
        self.sourcesPath = os.path.join(self.path, "sources")
        try:
            for directory in (self.streamsPath, self.sourcesPath):
                os.makedirs(directory, exist_ok=True)
            self._lock = os.open(
                os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as e:
            raise ConfigError(f"--data-dir {path}: {e.strerror}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ConfigError(f"--data-dir {path} is in use by another streamd") from None
        self.syncer = Syncer(reactor, FsyncPolicy(fsync), inThread)

    def streamNames(self) -> list[str]:
        """
        The streams that have a directory here.
        """
        names = []
        for name in sorted(os.listdir(self.streamsPath)):
            try:
                checkName(name)
            except BadName:
                continue
            names.append(name)
        return names

    def history(self, name: str, history: int, pool: HistoryPool | None) -> DurableHistory:
        """
        The history of the stream C{name}, bounded by C{history} bytes,
        opened from its directory (made if need be).
        """
        log = StreamLog(os.path.join(self.streamsPath, name), name, segmentBytes(history), self.syncer)
        return DurableHistory(log, max(history // 2, MiB), pool)

    def sourcePlace(self, stream: str, key: str) -> SourcePlace:
        """
        Where the source of C{stream} that C{key} names (a path) keeps its
        place.
        """
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return SourcePlace(os.path.join(self.sourcesPath, f"{stream}.{digest}"))

    def start(self) -> None:
        self.syncer.start()

    def stop(self) -> Deferred[None]:
        """
        Stop syncing; the streams' logs are closed after (L{DurableHistory.close}).
        """
        return self.syncer.stop()

    def unlock(self) -> None:
        os.close(self._lock)
