"""
The daemon's side of a client connection, and the factory that makes them.
"""

from __future__ import annotations

from collections.abc import Iterator

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from streamd._compat import FactoryOf
from streamd.auth import Access
from streamd.config import ServerConfig
from streamd.cursor import Cursor
from streamd.fastwrite import cursorFor
from streamd.framing import INT32, BadHeader, FrameError, Framing, Payload
from streamd.hub import Hub
from streamd.protocol import DEFAULT_MAX_PARTIAL_BYTES, FramedProtocol, PartialBudget, addressName, noDelay
from streamd.reasons import Reason
from streamd.tcpinfo import bytesAcked
from streamd.text import preview
from streamd.throttle import LogThrottle

# The longest token a client may send; the frame that carries it is read by
# itself, so an unauthenticated client cannot make the daemon hold more.
TOKEN_LIMIT = 4096
CONNECTION_LINES = 20
"""
Connections, and disconnections, logged one by one in a second at most.
"""

class _BadToken(Exception):
    """
    The client's first frame cannot be a token: its header is malformed or
    announces more than L{TOKEN_LIMIT} bytes.
    """


class _TokenHandshake:
    """
    The client's first frame, its token, while it is still coming.

    At most L{TOKEN_LIMIT} bytes (and a header) are held, and nothing of a
    malformed or oversized token frame is kept, so none of it can reach the
    log.
    """

    def __init__(self, framing: Framing) -> None:
        self._framing = framing
        self._buffer = b""
        self._refused = False

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """
        Take one read.

        @return: C{None} while the token's frame is incomplete; then the
            token, and the bytes that came after its frame in the same read.
        @raise _BadToken: if the frame cannot hold a token (and for every
            read after that).
        """
        if self._refused:
            raise _BadToken()
        buffer = self._buffer = self._buffer + data
        framing = self._framing
        if len(buffer) < framing.headerSize:
            return None
        try:
            length = framing.readLength(buffer, 0)
        except BadHeader:
            length = TOKEN_LIMIT + 1
        if length > TOKEN_LIMIT:
            self._buffer = b""
            self._refused = True
            raise _BadToken()
        end = framing.headerSize + length
        if len(buffer) < end:
            return None
        self._buffer = b""
        return buffer[framing.headerSize : end], buffer[end:]


class Connections:
    """
    The daemon's open client connections, across all its listeners.
    """

    def __init__(self, maxPartialBytes: int = DEFAULT_MAX_PARTIAL_BYTES) -> None:
        self._open: set[StreamServerProtocol] = set()
        self._waiting: list[Deferred[None]] = []
        self.partial = PartialBudget(maxPartialBytes)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[StreamServerProtocol]:
        return iter(list(self._open))

    def add(self, protocol: StreamServerProtocol) -> None:
        self._open.add(protocol)

    def discard(self, protocol: StreamServerProtocol) -> None:
        self._open.discard(protocol)

    def settle(self) -> None:
        """
        Fire L{whenEmpty}'s Deferreds if no connection is open.
        """
        if not self._open:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def whenEmpty(self) -> Deferred[None]:
        """
        Fires once no connection is open.
        """
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d


class StreamServerProtocol(FramedProtocol):
    """
    One client of the daemon: receives the stream, and publishes into it
    whatever it sends.
    """

    log = Logger()
    factory: StreamServerFactory
    messagesIn = 0
    bytesIn = 0
    since = 0.0
    cursor: Cursor
    _published = False
    _idleCall: IDelayedCall | None = None
    _authCall: IDelayedCall | None = None
    _throttle: LogThrottle | None = None
    _handshake: _TokenHandshake | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        config = factory.config
        self.cursor = cursorFor(self.transport, factory.hub, self.framing, self)
        noDelay(self.transport)
        self.access = config.access.initialAccess()
        if config.access.expectsToken:
            self._awaitToken()
        factory.clientConnected(self)
        if self.access is Access.NONE:
            self._authCall = factory.clock.callLater(config.authTimeout, self._authTimedOut)
        else:
            self._mayRead()
        if config.idleTimeout is not None:
            self._idleCall = factory.clock.callLater(config.idleTimeout, self._checkIdle, self._activity())

    def sendString(self, string: bytes) -> None:
        """
        Send one message to this client alone, through its cursor like
        everything the daemon writes to it: after the stream it is behind by.
        """
        self.cursor.sendPrivate(self.framing.encode(string))

    @property
    def messagesOut(self) -> int:
        """
        Messages handed to this client so far.
        """
        return self.cursor.messages

    def _awaitToken(self) -> None:
        """
        Take the client's first frame as its token.
        """
        self._handshake = _TokenHandshake(self.framing)

    def _mayRead(self) -> None:
        """
        The client may read the stream: start sending it.
        """
        self.factory.hub.subscribe(self.cursor)

    def dataReceived(self, data: bytes) -> None:
        handshake = self._handshake
        if handshake is None:
            super().dataReceived(data)
            return
        try:
            done = handshake.feed(data)
        except _BadToken:
            self._refuseToken()
            return
        if done is not None:
            self._handshake = None
            token, rest = done
            if self._authenticate(token) and rest:
                super().dataReceived(rest)

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        self._publish(payloads, raw, len(raw), len(raw) - len(payloads) * self.framing.headerSize)

    def _publish(self, payloads: list[Payload], raw: bytes, received: int, size: int) -> None:
        """
        Publish C{payloads} (C{size} bytes), which came in C{received}
        bytes: C{raw} if they are the same messages in this connection's
        framing, else nothing to relay as is.
        """
        if self.access is not Access.PUBLISH:
            self._rejectMessage(len(payloads))
            return
        hub = self.factory.hub
        if not self._published:
            self._published = True
            hub.addPublisher(self.transport, waits=False)
        # Send first and count after: the bookkeeping, and the few log lines
        # a second, do not delay the stream.
        hub.publish(payloads, raw, self.framing if raw else None, sender=self.cursor, received=received)
        self.messagesIn += len(payloads)
        self.bytesIn += received
        throttle = self._throttle
        if throttle is None:
            throttle = self._throttle = LogThrottle(self.factory.clock, self._reportUnlogged)
        for payload in throttle.admit(payloads, size):
            self.log.info(
                "{peer} sent {size} bytes: {preview}",
                peer=self.peer,
                size=len(payload),
                preview=preview(payload),
            )

    def _authenticate(self, token: bytes) -> bool:
        """
        Take the client's first frame as its token; drop it if it is wrong.
        """
        if self._authCall is not None:
            self._authCall.cancel()
            self._authCall = None
        wasReading = self.access is not Access.NONE
        self.access = max(self.access, self.factory.config.access.accessFor(token))
        if self.access is Access.NONE or (wasReading and self.access is Access.READ):
            self._refuseToken()
            return False
        self.log.info("{peer} authenticated ({access})", peer=self.peer, access=self.access.name.lower())
        if not wasReading:
            self._mayRead()
        return True

    def _refuseToken(self) -> None:
        self.log.warn("{peer} sent a wrong token; disconnecting", peer=self.peer)
        self.factory.hub.stats.authFailures += 1
        self._drop(Reason.AUTH_FAILED)

    def _authTimedOut(self) -> None:
        self._authCall = None
        self.log.warn(
            "{peer} sent no token within --auth-timeout {timeout:g} s; disconnecting",
            peer=self.peer,
            timeout=self.factory.config.authTimeout,
        )
        self.factory.hub.stats.authFailures += 1
        self._drop(Reason.AUTH_TIMEOUT)

    def _rejectMessage(self, count: int) -> None:
        self.log.warn(
            "{peer} is read-only but sent {count} message(s); rejected, disconnecting",
            peer=self.peer,
            count=count,
        )
        self.factory.hub.stats.rejectedPublishers += 1
        self._drop(Reason.READ_ONLY)

    def _reportUnlogged(self, messages: int, size: int) -> None:
        self.log.info(
            "{peer} sent {messages} more messages ({size} bytes) not logged one by one",
            peer=self.peer,
            messages=messages,
            size=size,
        )

    def slowConsumer(self, reason: Reason, behind: int) -> None:
        flow = self.factory.hub.flow
        why = {
            Reason.EVICTED: f"its position left the --history of {flow.history} bytes",
            Reason.MAX_PENDING: f"over --max-pending {flow.maxBehind}",
            Reason.SOFT_PENDING: f"over --soft-pending {flow.softBehind} for --soft-seconds {flow.softSeconds:g}",
        }[reason]
        self.log.warn(
            "{peer} is too slow: {behind} bytes behind, {why}; disconnecting",
            peer=self.peer,
            behind=behind,
            why=why,
        )
        self.factory.hub.stats.slowConsumerDisconnects += 1
        self._drop(reason)

    def lengthLimitExceeded(self, length: int) -> None:
        self.factory.hub.stats.oversizedFrameDisconnects += 1
        self.cursor.abandon()
        super().lengthLimitExceeded(length)

    def partialLimitExceeded(self, held: int, limit: int) -> None:
        self.factory.hub.stats.partialLimitDisconnects += 1
        self.cursor.abandon()
        super().partialLimitExceeded(held, limit)

    def frameErrorReceived(self, error: FrameError) -> None:
        self.factory.hub.stats.badFrameDisconnects += 1
        self.cursor.abandon()
        super().frameErrorReceived(error)

    def _activity(self) -> tuple[int, int]:
        # Raw bytes, not whole frames: a client sending a large frame slowly
        # is not idle.  Taken: what its TCP stack acknowledged, where the
        # kernel says (see streamd.tcpinfo), else what we handed to ours.
        acked = bytesAcked(self.transport)
        return (self.bytesReceived, self.cursor.written if acked is None else acked)

    def _checkIdle(self, before: tuple[int, int]) -> None:
        timeout = self.factory.config.idleTimeout
        assert timeout is not None
        now = self._activity()
        if now != before:
            self._idleCall = self.factory.clock.callLater(timeout, self._checkIdle, now)
            return
        self._idleCall = None
        self.log.info(
            "{peer} sent and took nothing for --idle-timeout {timeout:g} s; disconnecting",
            peer=self.peer,
            timeout=timeout,
        )
        self.factory.hub.stats.idleDisconnects += 1
        self._drop(Reason.IDLE)

    def _drop(self, reason: Reason) -> None:
        """
        Close the connection now, for C{reason}, which the int32 and ascii10
        framings have no way to tell the client.
        """
        self.abort()

    def close(self) -> None:
        """
        Send what this client is behind by, then close the connection.
        """
        self.cursor.close()

    def abort(self) -> None:
        """
        Close the connection now, whatever it is behind by.
        """
        self.cursor.abandon()
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        for call in (self._idleCall, self._authCall):
            if call is not None and call.active():
                call.cancel()
        if self._throttle is not None:
            self._throttle.stop()
        self.cursor.abandon()
        if self._published:
            self.factory.hub.removePublisher(self.transport)
        self.factory.clientDisconnected(self, reason)


class StreamServerFactory(FactoryOf[StreamServerProtocol]):
    """
    Makes a L{StreamServerProtocol} for each client of one listener.

    Every listener of a daemon has its own factory (and so its own framing);
    all of them share the hub, the rules and the set of connections.
    """

    protocol = StreamServerProtocol
    noisy = False
    log = Logger()

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        config: ServerConfig = ServerConfig(),
        framing: Framing = INT32,
        connections: Connections | None = None,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.config = config
        self.framing = framing
        self.connections = Connections(config.maxPartialBytes) if connections is None else connections
        # A storm of (re)connections, as after a restart, must not wait on
        # the log: past CONNECTION_LINES a second, they are counted.
        self._connectedLines = LogThrottle(clock, self._reportConnected, CONNECTION_LINES)
        self._disconnectedLines = LogThrottle(clock, self._reportDisconnected, CONNECTION_LINES)

    def buildProtocol(self, addr: IAddress) -> Protocol:  # type: ignore[override]
        if len(self.connections) >= self.config.maxClients:
            self.hub.stats.connectionsRefused += 1
            self.log.warn(
                "refusing {peer}: {n} clients connected, the --max-clients limit",
                peer=addressName(addr),
                n=len(self.connections),
            )
            # Not None: wrappers such as TLS build a connection around
            # whatever is returned, so the refusal must close it itself.
            return _Refused()
        protocol: StreamServerProtocol = super().buildProtocol(addr)  # type: ignore[assignment]
        protocol.framing = self.framing
        protocol.MAX_LENGTH = self.config.maxMessageSize
        protocol.partialBudget = self.connections.partial
        return protocol

    def clientConnected(self, protocol: StreamServerProtocol) -> None:
        protocol.since = self.clock.seconds()
        self.connections.add(protocol)
        stats = self.hub.stats
        stats.connections = len(self.connections)
        stats.connectionsTotal += 1
        if self._connectedLines.admitOne():
            self.log.info("client {peer} connected ({n} connected)", peer=protocol.peer, n=len(self.connections))

    def clientDisconnected(self, protocol: StreamServerProtocol, reason: Failure) -> None:
        self.connections.discard(protocol)
        self.hub.stats.connections = len(self.connections)
        if self._disconnectedLines.admitOne():
            self.log.info(
                "client {peer} disconnected: {messagesIn} messages in, {messagesOut} out ({reason})",
                peer=protocol.peer,
                messagesIn=protocol.messagesIn,
                messagesOut=protocol.messagesOut,
                reason=reason.getErrorMessage(),
            )
        self.connections.settle()

    def _reportConnected(self, count: int, size: int) -> None:
        self.log.info(
            "{count} more clients connected in a second, not logged one by one ({n} connected)",
            count=count,
            n=len(self.connections),
        )

    def _reportDisconnected(self, count: int, size: int) -> None:
        self.log.info(
            "{count} more clients disconnected in a second, not logged one by one ({n} connected)",
            count=count,
            n=len(self.connections),
        )

    def stopLogging(self) -> None:
        """
        Log what the connection lines held back, now (at shutdown).
        """
        self._connectedLines.stop()
        self._disconnectedLines.stop()


class _Refused(Protocol):
    """
    A connection over --max-clients: closed as soon as it is made.
    """

    def connectionMade(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]
