"""
Acknowledged publishing from the C{seq} client (version 5): every message
is numbered and kept until the daemon acknowledges it, and sent again, in
order, on every new connection, so that each is published exactly once
across cut connections and daemon restarts (the daemon drops what it has
already taken).
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from streamd.linesplit import LineSplitter
from streamd.seqframing import PubN, SPubN, framed

WINDOW_MESSAGES = 10_000
"""
Messages sent and not yet acknowledged above which the source of messages
(standard input) is paused, until half of them are.
"""


class NumberedPublisher:
    """
    Numbers what it is given to publish (from 1), to the stream C{stream}
    or the listener's, and sends it on the connection of the moment.

    @ivar producer: what feeds it (standard input), paused while too much
        waits for its acknowledgement.
    """

    def __init__(self, stream: str | None = None, window: int = WINDOW_MESSAGES) -> None:
        self.stream = stream
        self.window = window
        self.producer: Any = None
        self._paused = False
        self._next = 1
        self._unacknowledged: deque[tuple[int, bytes]] = deque()
        self._transport: Any = None
        self._finished = False
        self._whenDone: Deferred[None] | None = None

    def _frame(self, number: int, payload: bytes) -> bytes:
        if self.stream is None:
            return framed(PubN(number, payload))
        return framed(SPubN(number, self.stream, payload))

    def publish(self, payload: bytes) -> None:
        """
        Number C{payload} and send it, now if connected, else on the next
        connection.
        """
        number = self._next
        self._next += 1
        self._unacknowledged.append((number, payload))
        if self._transport is not None:
            self._transport.write(self._frame(number, payload))
        if len(self._unacknowledged) >= self.window and not self._paused and self.producer is not None:
            self._paused = True
            self.producer.pauseProducing()

    def connected(self, transport: Any) -> None:
        """
        A connection's HELLO was answered: send everything not yet
        acknowledged on it, in order.
        """
        self._transport = transport
        if self._unacknowledged:
            transport.write(b"".join(self._frame(n, p) for n, p in self._unacknowledged))

    def disconnected(self) -> None:
        self._transport = None

    def acknowledged(self, number: int) -> None:
        """
        Every message up to C{number} is in the daemon's log.
        """
        waiting = self._unacknowledged
        while waiting and waiting[0][0] <= number:
            waiting.popleft()
        if self._paused and len(waiting) <= self.window // 2:
            self._paused = False
            if self.producer is not None:
                self.producer.resumeProducing()
        self._checkDone()

    def finish(self) -> Deferred[None]:
        """
        Nothing more will be published: fires once all is acknowledged.
        """
        self._finished = True
        self._whenDone = Deferred()
        done = self._whenDone
        self._checkDone()
        return done

    @property
    def pending(self) -> int:
        """
        Messages not acknowledged yet.
        """
        return len(self._unacknowledged)

    def _checkDone(self) -> None:
        if self._finished and not self._unacknowledged and self._whenDone is not None:
            done, self._whenDone = self._whenDone, None
            done.callback(None)


class NumberedLineSender(Protocol):
    """
    Publishes each line of standard input through a L{NumberedPublisher},
    which pauses it while too many wait for their acknowledgement; fires
    C{whenRead} at the end of the input.
    """

    def __init__(self, publisher: NumberedPublisher, whenRead: Deferred[None], maxLength: int) -> None:
        self.publisher = publisher
        self.whenRead = whenRead
        self.splitter = LineSplitter(maxLength, self._skipped)

    def connectionMade(self) -> None:
        self.publisher.producer = self.transport

    def dataReceived(self, data: bytes) -> None:
        for line in self.splitter.feed(data):
            self.publisher.publish(line)

    def _skipped(self, length: int, finished: bool) -> None:
        if finished:
            sys.stderr.write(f"streamd.client: skipped a {length}-byte line, over --max-message-size\n")

    def connectionLost(self, reason: Failure | None = None) -> None:
        for line in self.splitter.finish():
            self.publisher.publish(line)
        self.publisher.producer = None
        self.whenRead.callback(None)
