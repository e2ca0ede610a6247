"""
The daemon's counters and their periodic summary line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from streamd.reasons import Reason


@dataclass
class Stats:
    """
    Everything streamd counts.  Deliveries count once per recipient.

    @ivar disconnects: connections the daemon closed or refused, and
        requests it refused, by L{Reason}: every reason has its counter.
    """

    connections: int = 0
    connectionsTotal: int = 0
    messagesIn: int = 0
    bytesIn: int = 0
    messagesOut: int = 0
    bytesOut: int = 0
    disconnects: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))

    def figures(self) -> dict[str, Any]:
        """
        Every counter by its name, the disconnects by their reasons' labels.
        """
        figures: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("connections", "connectionsTotal", "messagesIn", "bytesIn", "messagesOut", "bytesOut")
        }
        figures["disconnects"] = {reason.label: count for reason, count in self.disconnects.items()}
        return figures

    def summary(self) -> str:
        """
        One line with every counter (the disconnects that happened).
        """
        figures = self.figures()
        cuts = figures.pop("disconnects")
        line = " ".join(f"{name}={value}" for name, value in figures.items())
        return line + "".join(f" disconnects.{label}={count}" for label, count in cuts.items() if count)


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
