"""
The bytes waiting for one client, and the rules that bound them.

An L{Outbox} is registered as a streaming producer on its client's transport.
While the transport keeps up, data goes straight to it (and, with
L{streamd.fastwrite}'s outbox, straight to the socket when nothing is
buffered). When the transport's
own buffer fills, Twisted pauses the outbox, and from then on data is queued
here and counted, so every client's backlog is known exactly and the
slow-consumer rules can act on it. When the kernel has taken the transport's
buffer, Twisted resumes the outbox and the queue drains into the transport.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, ITransport
from zope.interface import implementer

MiB = 1024 * 1024


@dataclass(frozen=True)
class PendingLimits:
    """
    How much may wait for one client, and for how long.

    @ivar hard: bytes above which a client is cut at once.
    @ivar soft: bytes above which a client is cut if it stays there for
        C{softSeconds}.
    """

    hard: int = 8 * MiB
    soft: int = 1 * MiB
    softSeconds: float = 10.0


class OutboxOwner(Protocol):
    """
    What an outbox tells the connection it belongs to.
    """

    def slowConsumer(self, rule: str, pending: int) -> None:
        """
        The client broke the rule named C{rule} with C{pending} bytes waiting.
        """

    def softLimitCrossed(self, above: bool) -> None:
        """
        The backlog went above (C{True}) or back below the soft limit.
        """


@implementer(IPushProducer)
class Outbox:
    """
    Output for one client: straight to the transport while it keeps up,
    queued and counted while it does not.

    @ivar pending: bytes queued here, not yet handed to the transport.
    @ivar written: bytes handed to the transport so far.
    @ivar messages: messages given to L{write} so far.
    """

    # Thousands of these live at once; slots and a queue made only when
    # needed keep an idle client small.
    __slots__ = (
        "_transport",
        "_owner",
        "_limits",
        "_clock",
        "_queue",
        "_held",
        "_paused",
        "_closed",
        "_aboveSoft",
        "_softTimer",
        "pending",
        "written",
        "messages",
    )

    def __init__(
        self,
        transport: ITransport,
        owner: OutboxOwner,
        limits: PendingLimits,
        clock: IReactorTime,
    ) -> None:
        self._transport = transport
        self._owner = owner
        self._limits = limits
        self._clock = clock
        self._queue: deque[bytes] | None = None
        self._held = False
        self._paused = False
        self._closed = False
        self._aboveSoft = False
        self._softTimer: IDelayedCall | None = None
        self.pending = 0
        self.written = 0
        self.messages = 0
        transport.registerProducer(self, True)  # type: ignore[attr-defined]

    def write(self, data: bytes, count: int = 1) -> None:
        """
        Send C{data} (C{count} framed messages) to the client, or queue it
        while the transport is full.
        """
        self.messages += count
        if self._held:
            self._enqueue(data)
        else:
            self.written += len(data)
            self._send(data)

    def _send(self, data: bytes) -> None:
        """
        Hand C{data} to the transport.
        """
        self._transport.write(data)

    def _enqueue(self, data: bytes) -> None:
        if self._closed:
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append(data)
        self.pending += len(data)
        self._checkLimits()

    def _checkLimits(self) -> None:
        pending = self.pending
        limits = self._limits
        if pending > limits.hard:
            self._owner.slowConsumer("max-pending", pending)
        elif pending > limits.soft and not self._aboveSoft:
            self._aboveSoft = True
            self._softTimer = self._clock.callLater(limits.softSeconds, self._softExpired)
            self._owner.softLimitCrossed(True)

    def _softExpired(self) -> None:
        self._softTimer = None
        self._owner.slowConsumer("soft-pending", self.pending)

    def _belowSoft(self) -> None:
        if self._aboveSoft:
            self._aboveSoft = False
            if self._softTimer is not None:
                self._softTimer.cancel()
                self._softTimer = None
            self._owner.softLimitCrossed(False)

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: queue from now on.
        """
        self._paused = self._held = True

    def resumeProducing(self) -> None:
        """
        The transport has sent its buffer: hand it the queue until it is full
        again.
        """
        self._paused = False
        queue = self._queue
        send = self._send
        while queue and not self._paused:
            data = queue.popleft()
            self.pending -= len(data)
            self.written += len(data)
            send(data)
        self._held = self._closed or self._paused or bool(queue)
        if self.pending <= self._limits.soft:
            self._belowSoft()

    def stopProducing(self) -> None:
        """
        The connection is gone: drop the queue.
        """
        self.abandon()

    def abandon(self) -> None:
        """
        Drop everything queued and accept nothing more.
        """
        self._closed = self._held = True
        self._queue = None
        self.pending = 0
        self._belowSoft()

    def close(self) -> None:
        """
        Hand everything queued to the transport, then close the connection
        once the transport has sent it.
        """
        if self._closed:
            return
        self._closed = self._held = True
        transport = self._transport
        transport.unregisterProducer()  # type: ignore[attr-defined]
        if self._queue:
            transport.writeSequence(list(self._queue))
            self._queue = None
            self.pending = 0
        self._belowSoft()
        transport.loseConnection()
