"""
A subscriber's place in the history: what it has been sent, and what is next.

While a client keeps up, the hub hands it each batch as it is published
(L{Cursor.deliver}), as fast as before.  When its connection cannot take
more, the cursor stops there: it remembers the number of the next entry to
send, and the hub goes on without it.  Nothing is queued or copied for it;
its backlog is the stretch of the shared log between its position and the
head.  When the connection can take more, the cursor sends from the log
until it is caught up, and the hub hands it batches again.

This module's L{Cursor} writes through the transport, which pauses it when
its buffer fills (a TLS or test transport), a large entry L{MAX_WRITE}
bytes at a time, so that a client that does not read holds at most about
that much of it in its transport's buffer, not a copy of the whole entry;
L{streamd.fanout.socketcursor} has the cursor for plain TCP and UNIX sockets, which
sends straight to the socket.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from streamd.fanout.history import COUNT, FIRST, OFFSET, SENDER, Entry, History, lastOf
from streamd.framing import Framing
from streamd.reasons import Reason

if TYPE_CHECKING:
    from streamd.fanout.resume import Gap
    from streamd.stats import Stats


class CursorHub(Protocol):
    """
    What a cursor needs from the hub it reads: the log, the counters, and
    to be told when it falls behind, takes what it was given, catches up,
    is evicted, and leaves.
    """

    history: History
    stats: Stats

    def cursorBehind(self, cursor: Cursor) -> None: ...

    def cursorDrained(self, cursor: Cursor) -> None: ...

    def cursorCaughtUp(self, cursor: Cursor) -> None: ...

    def cursorEvicted(self, cursor: Cursor) -> None: ...

    def unsubscribe(self, cursor: Cursor) -> None: ...


class CursorOwner(Protocol):
    """
    What the hub tells the connection a cursor belongs to (a
    L{streamd.session.Session}).
    """

    def slowConsumer(self, cursor: Cursor, reason: Reason, behind: int) -> None:
        """
        The client of C{cursor} fell too far behind, by the rule C{reason},
        with C{behind} bytes of the log still to send.
        """

    def streamGap(self, cursor: Cursor, first: int, last: int) -> None:
        """
        Messages C{first} to C{last} of a cluster's stream, which C{cursor}
        reads, will never be in the log.
        """

    def ownMessages(self, cursor: Cursor, first: int, last: int) -> None:
        """
        Messages C{first} to C{last} were published through C{cursor}, and
        are not sent back through it.
        """


MAX_WRITE = 64 * 1024
"""
The most a L{Cursor} hands its transport at once: a transport pauses its
producer once its buffer holds more than its C{bufferSize} (64 KiB for
Twisted's), so a client that does not read takes about that much.
"""

_serials = itertools.count(1)


def newSerial() -> int:
    """
    A number no other publisher of this process has had (0 is the
    daemon's own sources).
    """
    return next(_serials)


@implementer(IPushProducer)
class Cursor:
    """
    One subscriber's output, registered on its transport as a streaming
    producer.

    @ivar live: whether it is caught up, so the hub hands it each batch.
    @ivar index: the number of the next entry to send, while not L{live}.
    @ivar nextSequence: the sequence number of the next message to send,
        while not L{live}: still known once entry L{index} has left the log.
    @ivar lastDrain: when its connection last took what it was given while
        it was behind (the hub's clock), or C{None} if it never has.
    @ivar written: bytes handed to the connection so far.
    @ivar messages: messages of the stream handed to it so far.
    @ivar serial: a number no other cursor of this process has had.
    """

    __slots__ = (
        "transport",
        "hub",
        "framing",
        "owner",
        "live",
        "index",
        "nextSequence",
        "lastDrain",
        "aboveSoftSince",
        "written",
        "messages",
        "closed",
        "_closing",
        "_then",
        "_paused",
        "_private",
        "_rest",
        "serial",
    )

    streaming = True

    def __init__(self, transport: Any, hub: CursorHub, framing: Framing, owner: CursorOwner) -> None:
        self.transport = transport
        self.hub = hub
        self.serial = newSerial()
        self.framing = framing
        self.owner = owner
        self.live = True
        self.index = 0
        self.nextSequence = 0
        self.lastDrain: float | None = None
        self.aboveSoftSince: float | None = None
        self.written = 0
        self.messages = 0
        self.closed = False
        self._closing = False
        self._then: Callable[[], object] | None = None
        self._paused = False
        # Frames for this client alone, each with the entry number it must
        # follow, while it is behind; and the gap it says, if it is one.
        self._private: deque[tuple[int, bytes, Gap | None]] | None = None
        # What is left of the entry (or frame) begun, when the transport
        # paused this cursor in the middle of it.
        self._rest: memoryview | None = None
        transport.registerProducer(self, self.streaming)

    @property
    def behind(self) -> int:
        """
        Bytes of the log between this cursor and the head.
        """
        if self.live:
            return 0
        history = self.hub.history
        if self.index >= history.end:
            return 0
        return history.endOffset - history[max(self.index, history.start)][OFFSET]

    @property
    def held(self) -> int:
        """
        Frames of this client's own (L{sendPrivate}) not yet handed to its
        connection.
        """
        private = self._private
        return 0 if private is None else len(private)

    def published(self, entry: Entry) -> None:
        """
        C{entry} was published through this cursor (so it is not sent
        back): its owner may tell the client.
        """
        self.owner.ownMessages(self, entry[FIRST], lastOf(entry))

    def countMessages(self, count: int, size: int) -> None:
        """
        Count C{count} messages of the stream, C{size} bytes, that are sent
        as private data (the rest of an entry a client resumes inside).
        """
        self.messages += count
        stats = self.hub.stats
        stats.messagesOut += count
        stats.bytesOut += size

    def deliver(self, data: bytes, count: int) -> None:
        """
        Send C{count} messages framed as C{data}: the hub's call for each
        batch while this cursor is L{live}, and L{sendPrivate}'s, with no
        messages of the stream, for a frame of this client's own.
        """
        self.messages += count
        self.written += len(data)
        self._write(data)

    def sendPrivate(self, data: bytes, before: int | None = None) -> None:
        """
        Send C{data} to this client alone, after everything of the stream
        that was published before it, or, for a cursor that is behind, just
        before entry number C{before}.
        """
        if self.closed:
            return
        if self.live:
            self.deliver(data, 0)
            return
        self._queue(before, data, None)

    def sendGap(self, gap: Gap, encode: Callable[[Gap], bytes | None], before: int | None = None) -> bool:
        """
        Send C{gap}, as C{encode} makes it, like L{sendPrivate}; a gap that
        follows on from the one this cursor still has to send becomes part
        of it, so the client is told one gap, not many.

        @return: whether C{gap} was queued as a gap of its own.
        """
        private = self._private
        if not self.live and private:
            at, _, queued = private[-1]
            if queued is not None and queued.reason == gap.reason and queued.last + 1 == gap.first:
                merged = type(gap)(queued.first, gap.last, gap.reason)
                private.pop()
                self._queue(
                    max(at, self.hub.history.end if before is None else before), encode(merged), merged
                )
                return False
        data = encode(gap)
        assert data is not None
        if self.live:
            self.sendPrivate(data)
        else:
            self._queue(before, data, gap)
        return True

    def _queue(self, before: int | None, data: bytes | None, gap: Gap | None) -> None:
        assert data is not None
        private = self._private
        if private is None:
            private = self._private = deque()
        at = self.hub.history.end if before is None else before
        place = len(private)
        while place and private[place - 1][0] > at:
            place -= 1
        private.insert(place, (at, data, gap))

    def seek(self, index: int) -> None:
        """
        Send the log from entry number C{index}, which must be held or the
        next one: a resuming client's position, or the oldest entry left
        after its own was evicted.  The entries are sent from the next
        L{pump}.
        """
        history = self.hub.history
        self.index = index
        self.nextSequence = history[index][FIRST] if index < history.end else history.nextSequence
        if self.live:
            self.live = False
            self.hub.cursorBehind(self)

    def _write(self, data: bytes) -> None:
        if len(data) <= MAX_WRITE:
            self.transport.write(data)
            return
        self._rest = memoryview(data)
        self._writeRest()

    def _writeRest(self) -> None:
        """
        Hand the transport what is left of the entry begun, L{MAX_WRITE}
        bytes at a time, until it pauses this cursor or it is all sent.
        """
        rest = self._rest
        write = self.transport.write
        while rest is not None and not self._paused and not self.closed:
            write(bytes(rest[:MAX_WRITE]))
            rest = rest[MAX_WRITE:] or None
        self._rest = rest

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: stop at the head.
        """
        self._paused = True
        if self.live and not self.closed:
            self.fallBehind()

    def fallBehind(self) -> None:
        """
        Stop taking batches from the hub; the next one to send is the next
        to be published.
        """
        self.live = False
        history = self.hub.history
        self.index = history.end
        self.nextSequence = history.nextSequence
        self.hub.cursorBehind(self)

    def resumeProducing(self) -> None:
        """
        The transport has sent its buffer: send from the log until it is
        full again or this cursor is caught up.
        """
        self._paused = False
        if self.closed:
            return
        if not self.live:
            self.hub.cursorDrained(self)
            self.pump()

    def pump(self) -> None:
        """
        Send the log from L{index} until the transport pauses this cursor or
        it is caught up.
        """
        history = self.hub.history
        stats = self.hub.stats
        write = self._write
        while not self._paused and not self.closed:
            if self._rest is not None:
                self._writeRest()
                continue
            index = self.index
            if index < history.start:
                # The hub cuts this cursor, or its owner moves it on.
                self.hub.cursorEvicted(self)
                if self.index < history.start:
                    return
                continue
            self._writePrivate(index)
            if index >= history.end:
                self._caughtUp()
                return
            entry = history[index]
            self.index = index + 1
            self.nextSequence = lastOf(entry) + 1
            if entry[SENDER] == self.serial:
                continue
            data = history.encoded(entry, self.framing)
            self.messages += entry[COUNT]
            self.written += len(data)
            stats.messagesOut += entry[COUNT]
            stats.bytesOut += len(data)
            write(data)

    def _writePrivate(self, index: int) -> None:
        private = self._private
        while private and private[0][0] <= index:
            data = private.popleft()[1]
            self.written += len(data)
            self._write(data)

    def _caughtUp(self) -> None:
        self._private = None
        self.live = True
        self.hub.cursorCaughtUp(self)
        if self._closing:
            self._finish()

    def stopProducing(self) -> None:
        """
        The connection is gone.
        """
        self.abandon()

    def abandon(self) -> None:
        """
        Send nothing more; leave the hub.
        """
        if not self.closed:
            self.closed = True
            self._private = None
            self.hub.unsubscribe(self)

    def sendFinal(self, data: bytes, close: Callable[[], object] | None = None) -> None:
        """
        Send nothing more of the stream: finish the frame begun, send
        C{data}, and close the connection once they are sent, by calling
        C{close} if given (a protocol that closes its own way, such as a
        WebSocket's close frame), else by closing the transport.
        """
        if self.closed:
            return
        self.abandon()
        transport = self.transport
        transport.unregisterProducer()
        transport.write(self._unsent() + data)
        if close is None:
            transport.loseConnection()
        else:
            close()

    def _unsent(self) -> bytes:
        """
        What is left to send of the frame begun.
        """
        rest, self._rest = self._rest, None
        return b"" if rest is None else bytes(rest)

    def close(self, then: Callable[[], object] | None = None) -> None:
        """
        Send what this client is behind by, then close its connection: by
        calling C{then}, if given, for a protocol that says goodbye its own
        way (a BYE with L{sendFinal}, a WebSocket's close frame), else by
        closing the transport.  C{then} is called with this cursor still
        open, and it is closed after.
        """
        if self.closed or self._closing:
            return
        self._closing = True
        self._then = then
        if self.live:
            self._finish()

    def _finish(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            then()
            self.abandon()
            return
        self.abandon()
        transport = self.transport
        transport.unregisterProducer()
        transport.loseConnection()
