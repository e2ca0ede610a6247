"""
The framed protocol that both the server and the client speak.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, FrameError, FrameTooLong, Framing, Payload


def addressName(address: object) -> str:
    """
    A short printable name for a peer's address.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if hasattr(address, "name"):
        # A UNIX socket's client usually has no name of its own.
        name = address.name
        if name is None:
            return "unix:(client)"
        return f"unix:{os.fsdecode(name)}"
    return str(address)


def noDelay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on a TCP connection: a live stream wants each
    message sent now, and streamd already joins what one read brings into
    one write.  (Asking a UNIX socket would only log an error.)
    """
    host = transport.getHost()
    if isinstance(host, (IPv4Address, IPv6Address)) and host.type == "TCP":
        setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)


class FramedProtocol(Int32StringReceiver):
    """
    An L{Int32StringReceiver} whose framing and limit are chosen per
    connection, which parses whole reads at once and stops cleanly on a bad
    frame.

    Subclasses receive messages through L{stringReceived} (one at a time) or,
    to handle a whole read at once, by overriding L{framesReceived}.
    """

    log = Logger()
    # A connected TCP, UNIX or TLS transport; Twisted types it loosely.
    transport: Any
    framing: Framing = INT32
    MAX_LENGTH = DEFAULT_MAX_MESSAGE_SIZE
    peer = "?"
    bytesReceived = 0
    _frameErrorSeen = False

    def connectionMade(self) -> None:
        self.peer = addressName(self.transport.getPeer())
        self._decoder = self.framing.decoder(self.MAX_LENGTH)

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        decoder = self._decoder
        payloads, raw = decoder.feed(data)
        if payloads:
            self.framesReceived(payloads, raw)
        error = decoder.error
        if error is not None and not self._frameErrorSeen:
            self._frameErrorSeen = True
            if isinstance(error, FrameTooLong):
                self.lengthLimitExceeded(error.length)
            else:
                self.frameErrorReceived(error)

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        """
        Messages completed by one read, and their bytes as received.  A
        message whose payload came over several reads is a C{memoryview} into
        C{raw}, so that a large one is not copied again; keeping it keeps all
        of C{raw}.
        """
        for payload in payloads:
            if self.transport.disconnecting:
                return
            self.stringReceived(bytes(payload))

    def sendString(self, string: bytes) -> None:
        self.transport.write(self.framing.encode(string))

    def lengthLimitExceeded(self, length: int) -> None:
        """
        The peer announced a frame over our limit: log it and drop only this
        connection.
        """
        self.log.warn(
            "{peer} announced a {length}-byte frame, over the {limit}-byte limit; disconnecting",
            peer=self.peer,
            length=length,
            limit=self.MAX_LENGTH,
        )
        self.transport.abortConnection()

    def frameErrorReceived(self, error: FrameError) -> None:
        """
        The peer sent bytes that are not a frame: log it and drop only this
        connection.
        """
        self.log.warn("{peer} {error}; disconnecting", peer=self.peer, error=str(error))
        self.transport.abortConnection()
