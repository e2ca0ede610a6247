"""
The daemon's named streams: a L{Hub} each, found by name and by pattern.

A stream is made when it is first published to or subscribed to (at most
C{maxStreams}, or only the declared ones), and forgotten once it has been
idle for C{idleTimeout}: no subscriber, no publisher and nothing held.
Each keeps its own history, numbers and epoch; C{--history} bounds what all
of them hold together (L{HistoryPool}), C{--stream-history} each one.

A pattern subscription is a L{StreamWatcher} filed under its pattern: it is
told of every stream that matches, those there now and those made later,
when they appear; matching never happens per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from streamd.config import FlowControl, StreamsConfig
from streamd.fanout.history import HistoryPool
from streamd.fanout.hub import Hub
from streamd.names import DEFAULT, NameTrie, PatternTrie, checkName
from streamd.stats import Stats

if TYPE_CHECKING:
    from streamd.durable.datadir import DataDir

AGE_INTERVAL = 1.0
"""
Seconds between two looks for messages older than C{--history-age}.
"""

OVERFLOW_RETRY = 0.1
"""
Seconds before the streams are trimmed again after a trim that could not
get under C{--history} (subscribers that keep up still need the rest).
"""


class StreamRefused(Exception):
    """
    A stream cannot be made: its str says why, in one line.
    """


class StreamWatcher(Protocol):
    """
    What a pattern subscription is told.
    """

    def streamAppeared(self, hub: Hub) -> None:
        """
        The stream of C{hub}, which matches the pattern, was made.
        """


class Streams:
    """
    The daemon's streams, by name.

    @ivar default: the stream every daemon has (C{default}).
    @ivar declared: the names of the streams configuration makes; with
        C{declaredOnly}, the only ones that may exist.
    """

    log = Logger()

    def __init__(
        self,
        stats: Stats,
        clock: IReactorTime,
        flow: FlowControl = FlowControl(),
        config: StreamsConfig = StreamsConfig(),
        declared: tuple[str, ...] = (),
        dataDir: DataDir | None = None,
        historyAge: float | None = None,
    ) -> None:
        self.stats = stats
        self.dataDir = dataDir
        self.clock = clock
        self.pool = HistoryPool(flow.history)
        history = config.streamHistory
        self.flow = flow if history is None else replace(flow, history=min(history, flow.history))
        self.maxStreams = config.maxStreams
        self.declared = frozenset((DEFAULT, *config.declared, *declared))
        self.declaredOnly = config.declaredOnly
        self.idleTimeout = config.idleTimeout
        self._hubs: dict[str, Hub] = {}
        self._names = NameTrie()
        self._watchers: PatternTrie[StreamWatcher] = PatternTrie()
        self._numbers = 0
        self._expiry: IDelayedCall | None = None
        self.hooks: list[Callable[[Hub], None]] = []
        for name in sorted(self.declared):
            self._make(name)
        self.default = self._hubs[DEFAULT]
        if dataDir is not None:
            self._openStored(dataDir)
        self._ages: LoopingCall | None = None
        if historyAge is not None:
            self._ages = LoopingCall(self._expireOld, historyAge)
            self._ages.clock = clock
            self._ages.start(AGE_INTERVAL, now=False)

    def _openStored(self, dataDir: DataDir) -> None:
        """
        Open the streams the data directory holds, so that patterns match
        them and their histories are served from the start.
        """
        for name in dataDir.streamNames():
            try:
                self.open(name)
            except StreamRefused as e:
                self.log.warn(
                    "{dir}: not opening its stream {name}: {why}", dir=dataDir.path, name=name, why=e
                )

    def _expireOld(self, age: float) -> None:
        cutoff = int((self.clock.seconds() - age) * 1000)
        for hub in self:
            hub.expireBefore(cutoff)

    def __len__(self) -> int:
        return len(self._hubs)

    def __iter__(self) -> Iterator[Hub]:
        return iter(list(self._hubs.values()))

    def get(self, name: str) -> Hub | None:
        """
        The stream C{name}, if it exists.
        """
        return self._hubs.get(name)

    def open(self, name: str) -> Hub:
        """
        The stream C{name}, made if it does not exist yet.

        @raise streamd.names.BadName: for a name that is not one.
        @raise StreamRefused: when it may not be made.
        """
        hub = self._hubs.get(name)
        if hub is not None:
            return hub
        checkName(name)
        if self.declaredOnly:
            raise StreamRefused(f"no stream {name!r}: only the declared streams exist (--streams declared)")
        if len(self._hubs) >= self.maxStreams:
            raise StreamRefused(
                f"no stream {name!r}: the daemon holds --max-streams {self.maxStreams} streams"
            )
        return self._make(name)

    def watch(self, pattern: str, watcher: StreamWatcher) -> list[Hub]:
        """
        Tell C{watcher} of every stream made from now on that C{pattern}
        matches.

        @return: the streams it matches now.
        """
        self._watchers.add(pattern, watcher)
        return [self._hubs[name] for name in self._names.match(pattern)]

    def unwatch(self, pattern: str, watcher: StreamWatcher) -> None:
        self._watchers.remove(pattern, watcher)

    def _make(self, name: str) -> Hub:
        history = None
        if self.dataDir is not None:
            history = self.dataDir.history(name, self.flow.history, self.pool)
        hub = Hub(
            self.stats, self.clock, self.flow, name=name, number=self._numbers, pool=self, history=history
        )
        if self.idleTimeout is not None:
            hub.lastActivity = self.clock.seconds()
        self._numbers += 1
        if hub.history.size > self.flow.history:
            hub.shrink(self.flow.history)
        self._hubs[name] = hub
        self._names.add(name)
        for hook in self.hooks:
            hook(hub)
        for watcher in self._watchers.match(name):
            watcher.streamAppeared(hub)
        if self.idleTimeout is not None and self._expiry is None:
            self._expiry = self.clock.callLater(self.idleTimeout, self._expire)
        return hub

    def overflow(self) -> None:
        """
        The streams hold more than C{--history} together: drop the oldest
        messages of the largest ones, to seven eighths of it, keeping those
        that subscribers that keep up still need.
        """
        pool = self.pool
        target = pool.limit - pool.limit // 8
        for hub in sorted(self._hubs.values(), key=lambda hub: hub.history.size, reverse=True):
            if pool.held <= target:
                return
            hub.shrink(max(hub.history.size - (pool.held - target), 0))
        # What subscribers still need is all that is left: look again a
        # little later, not at every message.
        pool.retryAt = self.clock.seconds() + OVERFLOW_RETRY

    def _expire(self) -> None:
        """
        Forget the streams idle since the last look (the declared ones
        stay), and look again later while there are streams to look at.
        """
        self._expiry = None
        assert self.idleTimeout is not None
        for hub in self:
            if hub.name not in self.declared and hub.idle(self.idleTimeout):
                del self._hubs[hub.name]
                self._names.remove(hub.name)
                hub.stop()
        if len(self._hubs) > len(self.declared):
            self._expiry = self.clock.callLater(self.idleTimeout, self._expire)

    def stop(self) -> None:
        """
        Stop every stream's timers, and the expiry.
        """
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        if self._ages is not None and self._ages.running:
            self._ages.stop()
        for hub in self:
            hub.stop()
