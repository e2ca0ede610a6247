"""
The daemon's counters and their periodic summary line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


@dataclass
class Stats:
    """
    Everything streamd counts.  Deliveries count once per recipient.
    """

    connections: int = 0
    connectionsTotal: int = 0
    connectionsRefused: int = 0
    messagesIn: int = 0
    bytesIn: int = 0
    messagesOut: int = 0
    bytesOut: int = 0
    slowConsumerDisconnects: int = 0
    oversizedFrameDisconnects: int = 0
    badFrameDisconnects: int = 0
    partialLimitDisconnects: int = 0
    idleDisconnects: int = 0
    authFailures: int = 0
    rejectedPublishers: int = 0

    def summary(self) -> str:
        """
        One line with every counter.
        """
        return " ".join(f"{name}={value}" for name, value in asdict(self).items())


class StatsLogger(Service):
    """
    Logs the counters every C{interval} seconds (never when it is 0) and once
    when the daemon stops.
    """

    log = Logger()

    def __init__(self, stats: Stats, clock: IReactorTime, interval: float) -> None:
        self.stats = stats
        self.interval = interval
        self._loop = LoopingCall(self.report)
        self._loop.clock = clock

    def report(self) -> None:
        """
        Log the counters now.
        """
        self.log.info("stats: {summary}", summary=self.stats.summary())

    def startService(self) -> None:
        super().startService()
        if self.interval > 0:
            self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self.report()
