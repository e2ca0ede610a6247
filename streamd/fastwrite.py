"""
The fast write path: send at once when a connection has nothing buffered.

Twisted's C{transport.write} only buffers, and the bytes leave on the next
reactor iteration.  For a live stream that adds latency to every message and a
reactor turn's worth of work to every write.  When a TCP or UNIX transport has
nothing waiting, L{ImmediateOutbox} hands the bytes to the kernel at once and
gives Twisted only what the kernel did not take, so order is kept: anything
written while bytes are buffered goes behind them, through the transport.
Writes of several megabytes go to the transport whole, which sends them
without copying.

This relies on how L{twisted.internet.abstract.FileDescriptor} keeps its
buffer (C{dataBuffer}, C{offset}, C{_tempDataLen}) and on the connection's
C{socket}; every other transport (TLS, test transports) gets a plain
C{write}.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.tcp import Connection

from streamd.outbox import Outbox, OutboxOwner, PendingLimits


def canWriteNow(transport: object) -> bool:
    """
    Whether an L{ImmediateOutbox} may bypass C{transport}'s buffer.
    """
    return isinstance(transport, Connection) and all(
        hasattr(transport, name) for name in ("dataBuffer", "offset", "_tempDataLen", "socket")
    )


def outboxFor(transport: ITransport, owner: OutboxOwner, limits: PendingLimits, clock: IReactorTime) -> Outbox:
    """
    The fastest outbox that works with C{transport}.
    """
    kind = ImmediateOutbox if canWriteNow(transport) else Outbox
    return kind(transport, owner, limits, clock)


class ImmediateOutbox(Outbox):
    """
    An L{Outbox} for TCP and UNIX transports that sends at once whenever the
    transport has nothing buffered.

    Everything the daemon writes to a client goes through its outbox, so
    while nothing of this outbox's is in the transport's buffer, it need not
    look at that buffer before sending.  After a partial send, or a write
    handed to the transport whole, it looks again, on each write, until the
    transport has sent what it holds.
    """

    __slots__ = ("_clear", "_sendNow")

    largeWrite = 4 * 1024 * 1024
    """
    Bytes above which a write goes to the transport whole.  That is the
    largest TCP send buffer Linux gives by default, so the kernel would take
    only part of such a write, and keeping the rest would copy it; the
    transport sends from the bytes it was given.
    """

    def __init__(
        self,
        transport: ITransport,
        owner: OutboxOwner,
        limits: PendingLimits,
        clock: IReactorTime,
    ) -> None:
        super().__init__(transport, owner, limits, clock)
        self._clear = True
        self._sendNow = transport.socket.send  # type: ignore[attr-defined]

    def _send(self, data: bytes) -> None:
        if (self._clear and not self._transport.disconnecting) or self._transportDrained():  # type: ignore[attr-defined]
            if len(data) <= self.largeWrite:
                try:
                    sent = self._sendNow(data)
                except OSError:
                    # Full (EAGAIN) or broken: the transport's own write path
                    # retries, or finds the error and closes the connection.
                    sent = 0
                if sent == len(data):
                    return
                if sent:
                    data = data[sent:]
            self._clear = False
        self._transport.write(data)

    def _transportDrained(self) -> bool:
        """
        Whether the transport has sent everything it was given and is still
        open; if so, sending at once is safe again.
        """
        transport = self._transport
        self._clear = bool(
            not transport._tempDataLen  # type: ignore[attr-defined]
            and transport.offset == len(transport.dataBuffer)  # type: ignore[attr-defined]
            and transport.connected  # type: ignore[attr-defined]
            and not transport.disconnecting  # type: ignore[attr-defined]
        )
        return self._clear
