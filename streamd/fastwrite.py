"""
The fast write path: send at once when a connection has nothing buffered.

Twisted's C{transport.write} only buffers, and the bytes leave on the next
reactor iteration.  For a live stream that adds latency to every message and a
reactor turn's worth of work to every write.  When a TCP or UNIX transport has
nothing waiting, L{writeNow} hands the bytes to the kernel at once and gives
Twisted only what the kernel did not take, so order is kept: anything written
while bytes are buffered goes behind them, through the transport.

This relies on how L{twisted.internet.abstract.FileDescriptor} keeps its
buffer (C{dataBuffer}, C{offset}, C{_tempDataLen}) and on
C{writeSomeData}; every other transport (TLS, test transports) gets a plain
C{write}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection


def canWriteNow(transport: object) -> bool:
    """
    Whether L{writeNow} may bypass C{transport}'s buffer.
    """
    return isinstance(transport, Connection) and all(
        hasattr(transport, name) for name in ("dataBuffer", "offset", "_tempDataLen", "writeSomeData")
    )


def writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to a transport for which L{canWriteNow} is true: straight
    to the socket when nothing is buffered, through the buffer otherwise.
    """
    if (
        not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)
