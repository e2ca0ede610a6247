"""
The clock source: the sockets exercise's C{The time is ...} ticks.
"""

from __future__ import annotations

import time

from twisted.internet.task import LoopingCall

from streamd.sources.base import Source, SourceContext


def tick() -> bytes:
    """
    One tick: the reactor thread's CPU time, as the exercise formats it.
    """
    return f"The time is {time.thread_time()!r}".encode()


class ClockSource(Source):
    """
    Publishes a tick every C{context.interval} seconds.
    """

    def __init__(self, context: SourceContext, argument: None = None) -> None:
        super().__init__(context, argument)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = context.reactor
        self._paused = False

    def _tick(self) -> None:
        if not self._paused:
            self.publish(tick())

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.context.interval, now=True)

    def stopService(self) -> object:
        if self._loop.running:
            self._loop.stop()
        return super().stopService()
