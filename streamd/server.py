"""
The daemon's side of a TCP client connection: the adapter that maps a framed
connection (C{int32}, C{ascii10}) onto its L{Session}, and the factory that
makes them.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from streamd._compat import FactoryOf
from streamd.config import ServerConfig
from streamd.fanout.cursor import Cursor
from streamd.fanout.hub import Hub
from streamd.fanout.resume import Gap, StartPoint
from streamd.fanout.socketcursor import bigReadLimit, cursorFor
from streamd.fanout.streams import Streams
from streamd.framing import INT32, BadHeader, FrameError, Framing, Payload
from streamd.listen.tcpinfo import bytesAcked
from streamd.protocol import FramedProtocol, noDelay
from streamd.reasons import Reason
from streamd.session import Connections, ISessionAdapter, Session, SessionContext

# The longest token a client may send; the frame that carries it is read by
# itself, so an unauthenticated client cannot make the daemon hold more.
TOKEN_LIMIT = 4096


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


@implementer(ISessionAdapter)
class FramedSessionProtocol(FramedProtocol):
    """
    A framed TCP, UNIX or TLS connection with a L{Session}: what the
    C{int32}, C{ascii10} and C{seq} adapters share.  Its frames' errors and
    limits are the session's reasons to drop it.
    """

    factory: StreamServerFactory
    kind = "tcp"
    ping: bytes | None = None
    pingAnswered = False
    session: Session

    @property
    def protocol(self) -> str:
        return self.framing.name

    def connectionMade(self) -> None:
        super().connectionMade()
        self.session = session = Session(self.factory.context, self)
        self.readLimit = bigReadLimit(self.transport)
        session.attach(cursorFor(self.transport, self.factory.hub, self.framing, session))
        noDelay(self.transport)
        if session.admit():
            self.sessionAdmitted()

    def sessionAdmitted(self) -> None:
        """
        The session was admitted: the protocol's own start.
        """

    @property
    def cursor(self) -> Cursor:
        cursor = self.session.cursor
        assert cursor is not None
        return cursor

    def activity(self) -> tuple[int, int]:
        # Raw bytes, not whole frames: a client sending a large frame slowly
        # is not idle.  Taken: what its TCP stack acknowledged, where the
        # kernel says (see streamd.listen.tcpinfo), else what we handed to ours.
        acked = bytesAcked(self.transport)
        return (self.bytesReceived, self.session.bytesOut if acked is None else acked)

    def greeting(self, point: StartPoint | None, hub: Hub) -> bytes:
        return b""

    def gapNotice(self, gap: Gap, hub: Hub) -> bytes | None:
        return None

    def ownNotice(self, first: int, last: int, hub: Hub) -> bytes | None:
        return None

    def framingFor(self, hub: Hub) -> Framing:
        return self.framing

    def refusal(self, subject: str, why: str) -> bytes | None:
        return None

    def goodbye(self, reason: Reason) -> bool:
        """
        The C{int32} and C{ascii10} framings have no way to say why (the
        C{seq} adapter says it with a BYE): at shutdown the connection is
        closed after the frame begun, otherwise at once.
        """
        if reason is Reason.SHUTDOWN:
            self.cursor.sendFinal(b"")
            return True
        self.abort()
        return False

    def abort(self) -> None:
        self.transport.abortConnection()

    def lengthLimitExceeded(self, length: int) -> None:
        self.session.drop(Reason.OVERSIZED_FRAME, length=length, limit=self.frameLimit)

    def partialLimitExceeded(self, held: int, limit: int) -> None:
        self.session.drop(Reason.MAX_PARTIAL, held=held, limit=limit)

    def frameErrorReceived(self, error: FrameError) -> None:
        self.session.drop(Reason.BAD_FRAME, error=str(error))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.session.lost(reason)
        # The session refers back to this protocol: let both go with the
        # connection, not at the cycle collector's next full collection.
        del self.session


class StreamServerProtocol(FramedSessionProtocol):
    """
    One client of an C{int32} or C{ascii10} listener: receives the stream,
    and publishes into it whatever it sends.  Its first frame is its token
    when the daemon asks for one.
    """

    _handshake: _TokenHandshake | None = None

    def sessionAdmitted(self) -> None:
        if self.factory.config.access.expectsToken:
            self._handshake = _TokenHandshake(self.framing)
        self.session.start()

    def sendString(self, string: bytes) -> None:
        """
        Send one message to this client alone, through its cursor like
        everything the daemon writes to it: after the stream it is behind by.
        """
        self.cursor.sendPrivate(self.framing.encode(string))

    def dataReceived(self, data: bytes) -> None:
        handshake = self._handshake
        if handshake is None:
            super().dataReceived(data)
            return
        try:
            done = handshake.feed(data)
        except _BadToken:
            self.session.drop(Reason.AUTH_FAILED)
            return
        if done is not None:
            self._handshake = None
            token, rest = done
            if self.session.authenticate(token) and rest:
                super().dataReceived(rest)

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        received = len(raw)
        self.session.publish(
            payloads, raw, self.framing, received, received - len(payloads) * self.framing.headerSize
        )


class StreamServerFactory(FactoryOf[FramedSessionProtocol]):
    """
    Makes a L{StreamServerProtocol} for each client of one listener.

    Every listener of a daemon has its own factory (and so its own framing
    and stream); all of them share the daemon's streams, the rules and the
    set of connections.
    """

    protocol: type[FramedSessionProtocol] = StreamServerProtocol
    noisy = False

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        config: ServerConfig = ServerConfig(),
        framing: Framing = INT32,
        connections: Connections | None = None,
        description: str = "tcp",
        streams: Streams | None = None,
    ) -> None:
        if connections is None:
            connections = Connections(config.maxPartialBytes, clock)
        self.context = SessionContext(hub, clock, config, connections, description, streams)
        self.framing = framing

    @property
    def hub(self) -> Hub:
        return self.context.hub

    @property
    def config(self) -> ServerConfig:
        return self.context.config

    @property
    def connections(self) -> Connections:
        return self.context.connections

    def buildProtocol(self, addr: IAddress) -> FramedSessionProtocol:  # type: ignore[override]
        protocol: FramedSessionProtocol = super().buildProtocol(addr)  # type: ignore[assignment]
        protocol.framing = self.framing
        protocol.MAX_LENGTH = self.config.maxMessageSize
        protocol.partialBudget = self.connections.partial
        return protocol
