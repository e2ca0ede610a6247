"""
The fast write path: a cursor that sends straight to a TCP or UNIX socket.

Twisted's C{transport.write} only buffers, and the bytes leave on the next
reactor iteration, after being joined into a private copy.  For a live stream
that adds latency to every message, and for a client that stopped reading it
would hold a copy of its backlog.  L{SocketCursor} hands the bytes to the
kernel at once and never gives the transport anything: what the kernel does
not take stays in the shared log, and the cursor asks the reactor to tell it
(through the transport) when the socket can take more.

This is the C{fastWrite} shortcut, and the bigger reads of L{bigReadLimit} the
C{bigReads} one: both borrow from Twisted's transports what
L{streamd._internals} lists, and are taken only where it allows.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection

from streamd import _internals
from streamd.fanout.cursor import Cursor
from streamd.fanout.history import COUNT, SENDER, Entry, lastOf
from streamd.reads import READ_SIZE

MAX_GATHER = 64
"""
Entries sent by one C{sendmsg} call at most, while catching up.
"""

def sendsToSocket(transport: object) -> bool:
    """
    Whether a L{SocketCursor} may send to C{transport}'s socket itself.
    """
    return isinstance(transport, Connection) and hasattr(transport, "socket") and _internals.allowed("fastWrite")


def nothingTaken(data: object) -> int:
    """
    The send of a socket that must not be sent to yet: it takes nothing.
    """
    return 0


def bigReadLimit(transport: object) -> int | None:
    """
    The most a TCP or UNIX C{transport} may read at once, L{READ_SIZE},
    where the C{bigReads} shortcut is allowed; C{None} elsewhere.  The
    protocol grows each read towards it (L{streamd.reads.readTarget}).
    """
    if isinstance(transport, Connection) and _internals.allowed("bigReads"):
        return READ_SIZE
    return None


def cursorFor(transport: Any, hub: Any, framing: Any, owner: Any, afterTransport: bool = False) -> Cursor:
    """
    The fastest cursor that works with C{transport}.

    @param afterTransport: whether the transport may still hold bytes the
        protocol wrote through it (an HTTP answer), which must go first: a
        L{SocketCursor} then sends nothing before the transport has sent
        them (L{SocketCursor.waitForTransport}).
    """
    if not sendsToSocket(transport):
        return Cursor(transport, hub, framing, owner)
    cursor = SocketCursor(transport, hub, framing, owner)
    if afterTransport:
        cursor.waitForTransport()
    return cursor


class SocketCursor(Cursor):
    """
    A L{Cursor} for TCP and UNIX transports, registered as a pull producer:
    it sends to the socket itself and never fills the transport's buffer, so
    the transport calls L{resumeProducing} whenever the socket is writable
    again after the cursor asked it to watch (C{startWriting}).
    """

    __slots__ = ("_send", "_sendmsg", "_waiting")

    streaming = False

    def __init__(self, transport: Any, hub: Any, framing: Any, owner: Any) -> None:
        sock = transport.socket
        self._send = sock.send
        self._sendmsg = sock.sendmsg
        self._waiting = False
        super().__init__(transport, hub, framing, owner)

    def waitForTransport(self) -> None:
        """
        Send nothing before the transport has sent what it holds (an HTTP
        answer the protocol wrote through it): until then the socket is
        taken to accept nothing, so this cursor keeps what it is given as
        it does for a full socket, and the transport resumes it, its pull
        producer, once its own buffer is empty.
        """
        self._waiting = True
        self._send = self._sendmsg = nothingTaken
        self.transport.startWriting()

    def deliver(self, data: bytes, count: int) -> None:
        # The hub's hot loop calls this once per client and entry: it sends
        # itself, one call deep, where the base class goes through _write.
        self.messages += count
        size = len(data)
        self.written += size
        if self.transport.disconnecting:
            return
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._broken()
            return
        if sent != size:
            self._rest = memoryview(data)[sent:]
            self.fallBehind()

    def fallBehind(self) -> None:
        super().fallBehind()
        self.transport.startWriting()

    def seek(self, index: int) -> None:
        super().seek(index)
        self.transport.startWriting()

    def _broken(self) -> None:
        # The peer is gone (EPIPE, ECONNRESET): the transport finds out on
        # its next read or write; nothing more is sent meanwhile.
        self.abandon()
        self.transport.abortConnection()

    def resumeProducing(self) -> None:
        if self._waiting:
            self._waiting = False
            sock = self.transport.socket
            self._send = sock.send
            self._sendmsg = sock.sendmsg
        if self.closed or self.live:
            return
        self.hub.cursorDrained(self)
        self.pump()

    def pump(self) -> None:
        """
        Send what is left of the entry begun, private frames due, and the
        log from L{index}, several entries per C{sendmsg}, until the socket
        is full or this cursor is caught up.
        """
        history = self.hub.history
        framing = self.framing
        while not self.closed and not self.transport.disconnecting:
            rest = self._rest
            index = self.index
            if rest is None and index < history.start:
                # The hub cuts this cursor, or its owner moves it on.
                self.hub.cursorEvicted(self)
                if self.index < history.start:
                    return
                continue
            buffers: list[bytes | memoryview] = [] if rest is None else [rest]
            # For each buffer after the rest: the entry number to go on from
            # once it is begun, and the entry it begins (empty for the
            # client's own message, which it does not get back), or None
            # for a private frame.
            steps: list[tuple[int, Entry | None]] = []
            private = self._private
            due = 0
            end = history.end
            while len(buffers) < MAX_GATHER:
                if private and due < len(private) and private[due][0] <= index:
                    buffers.append(private[due][1])
                    steps.append((index, None))
                    due += 1
                elif history.start <= index < end:
                    entry = history[index]
                    index += 1
                    buffers.append(b"" if entry[SENDER] == self.serial else history.encoded(entry, framing))
                    steps.append((index, entry))
                else:
                    break
            if not buffers:
                self._caughtUp()
                return
            try:
                sent = self._sendmsg(buffers)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._broken()
                return
            if not self._advance(buffers, steps, sent):
                self.transport.startWriting()
                return

    def _advance(self, buffers: list[Any], steps: list[tuple[int, Entry | None]], sent: int) -> bool:
        """
        Move past the C{sent} bytes of C{buffers}, counting the entries
        begun; keep what the kernel did not take of the last one begun.

        @return: whether everything was sent.
        """
        if self._rest is not None:
            first = buffers[0]
            if sent < len(first):
                self._rest = first[sent:]
                return False
            sent -= len(first)
            self._rest = None
            buffers = buffers[1:]
        stats = self.hub.stats
        for buffer, (after, entry) in zip(buffers, steps, strict=True):
            size = len(buffer)
            if sent == 0 and size:
                return False
            self.index = after
            self.written += size
            if entry is None:
                assert self._private is not None
                self._private.popleft()
            else:
                self.nextSequence = lastOf(entry) + 1
                if entry[SENDER] != self.serial:
                    self.messages += entry[COUNT]
                    stats.messagesOut += entry[COUNT]
                    stats.bytesOut += size
            if sent < size:
                self._rest = memoryview(buffer)[sent:]
                return False
            sent -= size
        return True
