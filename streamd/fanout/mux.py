"""
One connection, several streams: the cursors of a client subscribed to more
than one stream write through a L{Mux}, which is their transport and the
connection's one producer.

The connection's transport pauses the mux when its buffer fills: the mux
then pauses every cursor, so at most one of them (the one that was writing)
has part of an entry left to send, and no other writes until it has sent
it.  When the transport can take more, that one finishes first; then the
mux's own frames (a heartbeat, a PONG) go out; then the others, in turn,
each until it is caught up or the transport pauses the mux again.

A connection with one subscription needs no mux: its cursor writes to the
transport (or its socket) itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from streamd.fanout.cursor import Cursor
from streamd.fanout.socketcursor import nothingTaken


@implementer(IPushProducer)
class Mux:
    """
    The writer of a connection with several cursors (see the module).

    @ivar closed: whether nothing more is sent.
    """

    streaming = True

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._cursors: dict[Cursor, None] = {}
        self._private: deque[bytes] = deque()
        self._sentPrivate = 0
        self._paused = False
        self.closed = False
        transport.registerProducer(self, self.streaming)

    @property
    def cursors(self) -> list[Cursor]:
        return list(self._cursors)

    @property
    def written(self) -> int:
        """
        Bytes handed to the connection so far.
        """
        return self._sentPrivate + sum(cursor.written for cursor in self._cursors)

    @property
    def held(self) -> int:
        """
        Frames of the mux's own (L{sendPrivate}) not yet handed to the
        connection.
        """
        return len(self._private)

    @property
    def disconnecting(self) -> bool:
        return bool(self.transport.disconnecting)

    # The transport of its cursors.

    def registerProducer(self, cursor: Cursor, streaming: bool) -> None:
        self._cursors[cursor] = None

    def unregisterProducer(self) -> None:
        """
        A cursor leaves through L{remove}, not this.
        """

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def _send(self, data: bytes) -> None:
        """
        Hand the connection C{data} (the mux's own, or what is left of an
        entry), now.
        """
        self.transport.write(data)

    def _takeUnsent(self) -> bytes:
        """
        What the connection was handed and has not sent, taken back (none:
        the transport keeps it).
        """
        return b""

    def add(self, cursor: Cursor) -> None:
        """
        C{cursor} (made with this mux as its transport) is subscribed: it
        waits, as the others do, while the connection is full.
        """
        if self._paused:
            cursor.pauseProducing()

    def remove(self, cursor: Cursor) -> None:
        """
        C{cursor} is done (unsubscribed): after the rest of the entry it
        began, which a client must never be left in the middle of.
        """
        if self._cursors.pop(cursor, 0) is None:
            rest = cursor._unsent()
            cursor.abandon()
            if rest:
                self._send(rest)

    # What the connection is sent besides the streams.

    def sendPrivate(self, data: bytes) -> None:
        """
        Send C{data} between two entries, now or once the connection takes
        more.
        """
        if self.closed:
            return
        if self._paused:
            self._private.append(data)
            return
        self._sentPrivate += len(data)
        self._send(data)

    def sendFinal(self, data: bytes, close: Callable[[], object] | None = None) -> None:
        """
        Send nothing more of the streams: finish the entry begun, send
        C{data}, and close (as L{Cursor.sendFinal}).
        """
        if self.closed:
            return
        self.closed = True
        rest = b"".join(cursor._unsent() for cursor in self._cursors)
        for cursor in list(self._cursors):
            cursor.abandon()
        self._cursors.clear()
        transport = self.transport
        transport.unregisterProducer()
        transport.write(self._takeUnsent() + rest + b"".join(self._private) + data)
        self._private.clear()
        if close is None:
            transport.loseConnection()
        else:
            close()

    def close(self, then: Callable[[], object] | None = None) -> None:
        """
        Send what every cursor is behind by, then close, by calling C{then}
        if given, else by closing the transport (as L{Cursor.close}).
        """
        pending = list(self._cursors)
        if not pending:
            self._finish(then)
            return
        left = {cursor: None for cursor in pending}

        def done(cursor: Cursor) -> None:
            left.pop(cursor, None)
            if not left:
                self._finish(then)

        for cursor in pending:
            cursor.close(then=lambda cursor=cursor: done(cursor))  # type: ignore[misc]

    def _finish(self, then: Callable[[], object] | None) -> None:
        if then is not None:
            then()
        else:
            self.sendFinal(b"")

    def abandon(self) -> None:
        """
        Send nothing more.
        """
        self.closed = True
        for cursor in list(self._cursors):
            cursor.abandon()
        self._cursors.clear()
        self._private.clear()

    # The producer of the connection.

    def pauseProducing(self) -> None:
        self._paused = True
        for cursor in list(self._cursors):
            cursor.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The rest of the entry begun first, then the mux's own frames, then
        every cursor in turn (the one that went first goes last next time).
        """
        self._paused = False
        cursors = list(self._cursors)
        for cursor in cursors:
            if cursor._rest is not None:
                cursor._paused = False
                cursor._writeRest()
                if self._paused:
                    return
        while self._private and not self._paused:
            data = self._private.popleft()
            self._sentPrivate += len(data)
            self._send(data)
        for cursor in cursors:
            if self._paused:
                return
            if not cursor.closed:
                cursor.resumeProducing()
        if cursors and cursors[0] in self._cursors:
            self._cursors.pop(cursors[0])
            self._cursors[cursors[0]] = None

    def stopProducing(self) -> None:
        self.abandon()


class SocketMux(Mux):
    """
    A L{Mux} that sends straight to a TCP or UNIX socket, as a
    L{streamd.fanout.socketcursor.SocketCursor} does for a connection of
    one stream: never through Twisted's buffer, one C{send} per write.
    What the kernel does not take of a write is kept (an entry's worth at
    most: L{streamd.fanout.cursor.MAX_WRITE}) and every cursor waits until
    the socket takes it; the mux is the transport's pull producer, asked
    for more when the socket is writable again.
    """

    streaming = False

    def __init__(self, transport: Any, afterTransport: bool = False) -> None:
        """
        @param afterTransport: whether the transport may still hold bytes
            the protocol wrote through it (an HTTP answer), which must go
            first: nothing is sent to the socket before the transport has
            sent them (as L{streamd.fanout.socketcursor.SocketCursor.waitForTransport}).
        """
        self._socketSend = transport.socket.send
        self._unsentBytes: memoryview | None = None
        self._waiting = False
        super().__init__(transport)
        if afterTransport:
            self._waiting = True
            self._socketSend = nothingTaken
            transport.startWriting()

    def write(self, data: bytes) -> None:
        self._send(data)

    def _send(self, data: bytes) -> None:
        if self._unsentBytes is not None:
            # What must follow at once (the rest of an entry whose stream
            # stopped) waits behind it.
            self._unsentBytes = memoryview(bytes(self._unsentBytes) + data)
            return
        if self.transport.disconnecting:
            return
        try:
            sent = self._socketSend(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # The peer is gone: the transport finds out on its next read.
            self.abandon()
            self.transport.abortConnection()
            return
        if sent < len(data):
            self._unsentBytes = memoryview(data)[sent:]
            self.pauseProducing()
            self.transport.startWriting()

    def resumeProducing(self) -> None:
        """
        The socket can take more: what it did not take first, then the
        cursors.
        """
        if self._waiting:
            self._waiting = False
            self._socketSend = self.transport.socket.send
        unsent = self._unsentBytes
        if unsent is not None:
            self._unsentBytes = None
            self._send(bytes(unsent))
            if self._unsentBytes is not None:
                return
        if self._paused:
            super().resumeProducing()

    def _takeUnsent(self) -> bytes:
        unsent, self._unsentBytes = self._unsentBytes, None
        return b"" if unsent is None else bytes(unsent)
