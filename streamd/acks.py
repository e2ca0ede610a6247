"""
The acknowledgements a publisher that numbers its messages is owed (C{seq}
version 5): each once its message is in the log, as durable as C{--fsync}
makes it, and in the order of its messages, even when they went to streams
whose syncs end in another order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class Acknowledgements:
    """
    One publisher's acknowledgements not yet sent: C{send(number, seq)}
    sends one; C{failed} is told if a sync they wait for fails.
    """

    def __init__(self, send: Callable[[int, int], object], failed: Callable[[Failure], object]) -> None:
        self._send = send
        self._failed = failed
        # [number, seq, durable yet] for each, in the order of the messages.
        self._waiting: deque[list[int | bool]] = deque()

    def add(self, number: int, seq: int, durable: Deferred[None] | None) -> None:
        """
        Publish number C{number} is message C{seq}; it is durable once
        C{durable} fires (C{None}: now).
        """
        if durable is None and not self._waiting:
            self._send(number, seq)
            return
        item: list[int | bool] = [number, seq, durable is None]
        self._waiting.append(item)
        if durable is not None:
            durable.addCallbacks(self._durable, self._failed, callbackArgs=(item,))

    def _durable(self, result: None, item: list[int | bool]) -> None:
        item[2] = True
        waiting = self._waiting
        while waiting and waiting[0][2]:
            number, seq = waiting.popleft()[:2]
            self._send(int(number), int(seq))
