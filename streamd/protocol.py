"""
The framed protocol that both the server and the client speak.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from streamd.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    INT32,
    Decoder,
    FrameError,
    FrameTooLong,
    Framing,
    Payload,
)
from streamd.reads import readTarget

DEFAULT_MAX_PARTIAL_BYTES = 256 * 1024 * 1024


class PartialBudget:
    """
    The memory that a set of connections holds for frames they have begun
    and not finished (L{streamd.framing.Decoder.held}), and its bound.

    @ivar limit: the most they may hold together, in bytes.
    @ivar held: what they hold now.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def move(self, before: int, after: int) -> bool:
        """
        Count that one connection now holds C{after} bytes, not C{before}.

        @return: whether the total is still within the limit.
        """
        self.held += after - before
        return self.held <= self.limit


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
    sock = getattr(transport, "socket", None)
    if isinstance(sock, socket.socket):
        # The common case, without making address objects: a connection
        # storm makes thousands a second.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return
    host = transport.getHost()
    if isinstance(host, (IPv4Address, IPv6Address)) and host.type == "TCP":
        setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setTcpNoDelay is not None:
            setTcpNoDelay(True)


class FramedProtocol(Int32StringReceiver):
    """
    An C{Int32StringReceiver} whose framing and limit are chosen per
    connection, which parses whole reads at once and stops cleanly on a bad
    frame.

    Subclasses receive messages through C{stringReceived} (one at a time) or,
    to handle a whole read at once, by overriding L{framesReceived}.  The
    first keeps C{Int32StringReceiver}'s contract, checked by Twisted's own
    tests of it: C{MAX_LENGTH} may change at any time, and L{recvd} holds
    (and, set in C{stringReceived}, replaces) the bytes not yet parsed.
    With L{framesReceived} overridden, a whole read is parsed before any of
    its messages is handled, so setting L{recvd} there has no effect.

    @ivar partialBudget: shared with the other connections whose unfinished
        frames are bounded together, or C{None} for no bound.
    """

    log = Logger()
    # A connected TCP, UNIX or TLS transport; Twisted types it loosely.
    transport: Any
    framing: Framing = INT32
    _peer: str | None = None
    bytesReceived = 0
    partialBudget: PartialBudget | None = None
    _maxLength = DEFAULT_MAX_MESSAGE_SIZE
    _decoder: Decoder | None = None
    _frameErrorSeen = False
    _held = 0
    # While stringReceived runs: the read's complete frames, and where the
    # unparsed ones begin; and a replacement for recvd, if one was set.
    _parsing: tuple[bytes, int] | None = None
    _newRecvd: bytes | None = None
    # The most the transport reads at once, where this protocol sets each
    # read's size (L{readTarget}, L{Decoder.readSize}), or None where it
    # does not.
    readLimit: int | None = None

    @property  # type: ignore[override]
    def MAX_LENGTH(self) -> int:
        """
        The largest payload accepted; setting it takes effect at once.
        """
        return self._maxLength

    @MAX_LENGTH.setter
    def MAX_LENGTH(self, limit: int) -> None:
        self._maxLength = limit
        if self._decoder is not None:
            self._decoder.maxLength = limit

    @property
    def recvd(self) -> bytes:  # type: ignore[override]
        """
        The bytes received and not yet parsed into messages (see the class).
        """
        parsing = self._parsing
        rest = b"" if parsing is None else parsing[0][parsing[1] :]
        decoder = self._decoder
        return rest + (b"" if decoder is None else decoder.unprocessed())

    @recvd.setter
    def recvd(self, data: bytes) -> None:
        self._newRecvd = data

    @property
    def frameLimit(self) -> int:
        """
        The largest frame payload the decoder takes now: L{MAX_LENGTH},
        unless L{limitFrames} said otherwise.
        """
        return self._frameDecoder().maxLength

    def limitFrames(self, limit: int) -> None:
        """
        Take frames of at most C{limit} bytes for now, whatever L{MAX_LENGTH}
        says (a protocol on top may accept less before a handshake, or count
        a header of its own in the payload).
        """
        self._frameDecoder().maxLength = limit

    def limitRaised(self) -> None:
        """
        The frame limit was raised while a read was parsed (by a HELLO in
        it): the frames that the old limit stopped at are parsed again.
        Call it once the frames before them are handled.
        """
        decoder = self._decoder
        error = decoder.error if decoder is not None else None
        if decoder is not None and isinstance(error, FrameTooLong) and error.length <= decoder.maxLength:
            rest = decoder.unprocessed()
            self._decoder = self.framing.decoder(decoder.maxLength)
            self._feed(rest)

    def _frameDecoder(self) -> Decoder:
        decoder = self._decoder
        if decoder is None:
            # Made on first use rather than in connectionMade, which a
            # subclass of Int32StringReceiver need not pass on.
            decoder = self._decoder = self.framing.decoder(self.MAX_LENGTH)
        return decoder

    @property
    def peer(self) -> str:
        """
        The peer's address, for the log: made when first asked for, not for
        each of the thousands of connections a storm brings.
        """
        peer = self._peer
        if peer is None:
            transport = self.transport
            peer = self._peer = "?" if transport is None else addressName(transport.getPeer())
        return peer

    @peer.setter
    def peer(self, name: str) -> None:
        self._peer = name

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        self._feed(data)
        decoder: Decoder = self._decoder  # type: ignore[assignment]
        held = decoder.held
        if held != self._held:
            self._heldChanged(held)
        limit = self.readLimit
        if limit is not None:
            self.transport.bufferSize = decoder.readSize(readTarget(len(data), limit))

    def _feed(self, data: bytes) -> None:
        decoder = self._frameDecoder()
        payloads, raw = decoder.feed(data)
        if payloads:
            self.framesReceived(payloads, raw)
        error = decoder.error
        if error is not None and not self._frameErrorSeen and decoder is self._decoder:
            self._frameErrorSeen = True
            if isinstance(error, FrameTooLong):
                self.lengthLimitExceeded(error.length)
            else:
                self.frameErrorReceived(error)

    def _heldChanged(self, held: int) -> None:
        """
        The decoder now holds C{held} bytes: count them in the budget, and
        cut this connection if they take it over its limit.
        """
        before, self._held = self._held, held
        budget = self.partialBudget
        if budget is not None and not budget.move(before, held):
            budget.move(held, 0)
            self._held = 0
            if self._decoder is not None:
                self._decoder.discard()
            self.partialLimitExceeded(held, budget.limit)

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        """
        Messages completed by one read, and their bytes as received.  A
        message whose payload came over several reads is a C{memoryview} into
        C{raw}, so that a large one is not copied again; keeping it keeps all
        of C{raw}.
        """
        headerSize = self.framing.headerSize
        parsed = 0
        for payload in payloads:
            if self.transport.disconnecting:
                break
            parsed += headerSize + len(payload)
            self._parsing = (raw, parsed)
            self.stringReceived(bytes(payload))
            replacement = self._newRecvd
            if replacement is not None:
                self._parsing = self._newRecvd = None
                self._decoder = None
                self._feed(replacement)
                return
        self._parsing = None

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

    def partialLimitExceeded(self, held: int, limit: int) -> None:
        """
        This connection's unfinished frame, C{held} bytes of memory, would
        take what all connections hold over C{limit}: log it and drop only
        this connection.
        """
        self.log.warn(
            "{peer} holds {held} bytes of an unfinished frame, which would take all clients' "
            "unfinished frames over --max-partial-bytes {limit}; disconnecting",
            peer=self.peer,
            held=held,
            limit=limit,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._decoder is not None:
            self._decoder.discard()
        if self._held and self.partialBudget is not None:
            self.partialBudget.move(self._held, 0)
            self._held = 0

    def frameErrorReceived(self, error: FrameError) -> None:
        """
        The peer sent bytes that are not a frame: log it and drop only this
        connection.
        """
        self.log.warn("{peer} {error}; disconnecting", peer=self.peer, error=str(error))
        self.transport.abortConnection()
