"""
The fast write path: send at once when a connection has nothing buffered.

Twisted's C{transport.write} only buffers, and the bytes leave on the next
reactor iteration.  For a live stream that adds latency to every message and a
reactor turn's worth of work to every write.  When a TCP or UNIX transport has
nothing waiting, L{ImmediateOutbox} hands the bytes to the kernel at once and
gives Twisted only what the kernel did not take, so order is kept: anything
written while bytes are buffered goes behind them, through the transport.

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
    """

    __slots__ = ()

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if (
            not transport._tempDataLen  # type: ignore[attr-defined]
            and transport.offset == len(transport.dataBuffer)  # type: ignore[attr-defined]
            and transport.connected  # type: ignore[attr-defined]
            and not transport.disconnecting  # type: ignore[attr-defined]
        ):
            try:
                sent = transport.socket.send(data)  # type: ignore[attr-defined]
            except OSError:
                # Full (EAGAIN) or broken: the transport's own write path
                # retries, or finds the error and closes the connection.
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
        transport.write(data)
