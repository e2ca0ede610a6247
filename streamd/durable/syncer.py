"""
C{--fsync}: when what the logs wrote is made to survive a power cut.

The logs write every entry as it is published, so a process that dies
(C{kill -9}, the OOM killer) loses nothing they wrote: the kernel has it.
What a power cut may lose is what was not yet synced to the disk:

  - C{always}: nothing acknowledged; a publisher's ACK waits for the sync
    that covers its message.  Syncs run one at a time in a thread, each
    covering every write made before it began (group commit), so many
    publishers share one.
  - C{everysec}: about the last second; a thread syncs every log written
    to, once a second.
  - C{no}: whatever the kernel had not written back yet (often 30 s).

Syncing never runs on the reactor's thread, and neither does deleting the
segments the history let go of: unlinking a file of 64 MiB that the page
cache holds takes tens of milliseconds.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from streamd.durable.segment import removeSegment

if TYPE_CHECKING:
    from streamd.durable.log import ActiveSegment, StreamLog


class FsyncPolicy(Enum):
    """
    The C{--fsync} choices (Redis's C{appendfsync}).
    """

    ALWAYS = "always"
    EVERYSEC = "everysec"
    NO = "no"


INTERVAL = 1.0
"""
Seconds between two syncs with C{everysec}, and between two writes of the
indexes with C{no}.
"""

_Job = tuple["StreamLog", "ActiveSegment", int, int]


class Syncer:
    """
    Syncs the logs of one data directory as C{policy} says, and writes
    their indexes after (an index record never points at data a power cut
    may have lost); deletes the segments let go of.
    """

    log = Logger()

    def __init__(
        self, reactor: Any, policy: FsyncPolicy, inThread: Callable[..., Deferred[Any]] | None = None
    ) -> None:
        self.reactor = reactor
        self.policy = policy
        # How the syncs run: in the reactor's thread pool, or (tests) as given.
        self._inThread = inThread or self._threaded
        self.fsync = policy is not FsyncPolicy.NO
        self._always = policy is FsyncPolicy.ALWAYS
        self._dirty: dict[StreamLog, None] = {}
        self._retired: list[tuple[StreamLog, ActiveSegment, bytes]] = []
        # Segments to delete (paths without suffix), at the next sync.
        self._doomed: list[str] = []
        self._waiters: dict[StreamLog, deque[tuple[int, Deferred[None]]]] = {}
        self._running: Deferred[Any] | None = None
        # How far each log is synced, in bytes since it began.
        self._syncedUpTo: dict[StreamLog, int] = {}
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self.syncs = 0

    def _threaded(self, work: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), work, *args)

    def start(self) -> None:
        if self.policy is not FsyncPolicy.ALWAYS:
            self._loop.start(INTERVAL, now=False)

    def dirty(self, log: StreamLog) -> None:
        """
        C{log} was written to.
        """
        self._dirty[log] = None
        if self._always and self._running is None:
            self._sync()

    def whenDurable(self, log: StreamLog) -> Deferred[None]:
        """
        Fires once what C{log} holds now is as durable as the policy
        makes an acknowledged message: at once, but with C{always}, once
        it is synced.
        """
        if self.policy is not FsyncPolicy.ALWAYS or self._syncedUpTo.get(log, -1) >= log.written:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(log, deque()).append((log.written, d))
        return d

    def retire(self, log: StreamLog, segment: ActiveSegment, window: bytes) -> None:
        """
        C{log} moved on from C{segment}: sync it and close it, then save
        C{window}, the publishers' window up to its end.
        """
        self._retired.append((log, segment, window))
        if self.policy is FsyncPolicy.ALWAYS and self._running is None:
            self._sync()

    def remove(self, paths: list[str]) -> None:
        """
        Delete the segments at C{paths}, which no history holds any more, in
        the thread, with the next sync (within L{INTERVAL}, or at once with
        C{always}).  A daemon stopped before finds them at start, and lets
        go of them again.
        """
        self._doomed += paths
        if self._always and self._running is None:
            self._sync()

    def _tick(self) -> None:
        if self._running is None and (self._dirty or self._retired or self._doomed):
            self._sync()

    def _sync(self) -> None:
        jobs: list[_Job] = [
            (log, log.active, log.active.queued, log.written) for log in self._dirty if log.active is not None
        ]
        retired, self._retired = self._retired, []
        doomed, self._doomed = self._doomed, []
        self._dirty = {}
        fds = [segment.logFd for _, segment, _, _ in jobs]
        running = self._inThread(self._work, fds, retired, doomed)
        self._running = running
        running.addCallbacks(self._synced, self._failed, callbackArgs=(jobs,), errbackArgs=(jobs, doomed))

    def _work(
        self, fds: list[int], retired: list[tuple[StreamLog, ActiveSegment, bytes]], doomed: list[str]
    ) -> list[tuple[str, str]]:
        """
        In a thread: sync the retired segments, close them and save their
        windows, sync the logs being written, and delete the doomed
        segments.

        @return: the segments that could not be deleted, and why.
        """
        for log, segment, window in retired:
            if self.fsync:
                os.fsync(segment.logFd)
                os.fsync(segment.indexFd)
            segment.close()
            log.saveWindow(window)
        if self.fsync:
            for fd in fds:
                os.fsync(fd)
        undeleted = []
        for path in doomed:
            try:
                removeSegment(path)
            except OSError as e:
                undeleted.append((path, e.strerror or str(e)))
        return undeleted

    def _synced(self, undeleted: list[tuple[str, str]], jobs: list[_Job]) -> None:
        self._running = None
        self.syncs += 1
        for path, why in undeleted:
            self.log.warn("could not delete the old segment {path}: {why}", path=path, why=why)
        for log, segment, queued, written in jobs:
            segment.writeIndex(queued)
            self._syncedUpTo[log] = written
            self._release(log, written, None)
        if self._always and (self._dirty or self._retired or self._doomed):
            self._sync()

    def _failed(self, failure: Failure, jobs: list[_Job], doomed: list[str]) -> None:
        self._running = None
        self.log.failure(
            "syncing the data directory failed: acknowledgements wait for a sync that works", failure
        )
        for log, _, _, written in jobs:
            self._release(log, written, failure)
            self._dirty[log] = None
        # Deleted with the next sync, those of them still there.
        self._doomed[:0] = doomed

    def _release(self, log: StreamLog, written: int, failure: Failure | None) -> None:
        waiters = self._waiters.get(log)
        while waiters and waiters[0][0] <= written:
            d = waiters.popleft()[1]
            if failure is None:
                d.callback(None)
            else:
                d.errback(failure)

    def finish(self, segment: ActiveSegment) -> None:
        """
        At shutdown: sync C{segment} as the policy says and close it.
        """
        if self.fsync:
            os.fsync(segment.logFd)
            os.fsync(segment.indexFd)
        segment.close()

    def stop(self) -> Deferred[None]:
        """
        Stop syncing: fires once the sync under way, if any, is done, the
        retired segments are closed and the doomed ones deleted.
        """
        if self._loop.running:
            self._loop.stop()
        running = self._running
        done: Deferred[None] = Deferred()

        def closeRetired(_: object) -> None:
            retired, self._retired = self._retired, []
            doomed, self._doomed = self._doomed, []
            self._work([], retired, doomed)
            done.callback(None)

        if running is None:
            closeRetired(None)
        else:
            running.addBoth(closeRetired)
        return done
