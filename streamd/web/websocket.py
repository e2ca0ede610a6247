"""
WebSocket clients at C{/ws}: the adapter of a L{Session} to autobahn's
protocol, which does the handshake, the frames a client sends and the
closing handshake.  Once the handshake is done, the stream is written by the
session's L{Cursor} as frames made once per history entry
(L{streamd.web.framing}): the hub's fast loop, flow control and limits apply
unchanged.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from zope.interface import implementer

from streamd.fanout.cursor import Cursor
from streamd.fanout.hub import Hub
from streamd.fanout.resume import HEAD, Gap, StartPoint
from streamd.listen.tcpinfo import bytesAcked
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.session import ISessionAdapter, Session
from streamd.web.context import HTTP_STATUS, BadPosition, WebContext, bearerToken, startRequest
from streamd.web.framing import PING, WEBSOCKET, byeMessage, control, gapMessage

QUIET = "error"
"""
The level from which autobahn's own lines are logged.  The session logs each
connection's story once, in streamd's words; autobahn's debug lines would
copy the handshake's headers (a token) into the log, and its per-connection
warnings are lines any client could flood the log with.
"""

SHUTDOWN_CLOSE_TIMEOUT = 60.0
"""
Seconds a client has to answer the daemon's close frame at shutdown.  The
frame goes out after everything the client is behind by, so a client taking
megabytes of backlog needs more than autobahn's one second; the daemon's
C{--shutdown-timeout} still bounds the whole wait.  Other refusals keep
autobahn's second.
"""


MAX_UNANSWERED_PINGS = 16
"""
Pings a client may send while it does not take what it is sent; past that
it is cut (C{ping_flood}).
"""


SERVICE_RESTART = 1012
"""
The close code of a shutdown (RFC 6455's registry: "Service Restart").
"""


def _parameter(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


@implementer(ISessionAdapter)
class StreamWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    One WebSocket client: gets the stream, and publishes what it sends,
    under its L{Session}'s rules.
    """

    log = txaio.make_logger(level=QUIET)  # type: ignore[attr-defined]
    kind = "websocket"
    protocol = "websocket"
    ping = PING
    pingAnswered = True
    factory: StreamWebSocketFactory
    transport: Any
    peer = ""
    session: Session | None = None
    bytesReceived = 0
    _awaitingToken = False
    _opened = False
    _refusal: Reason | None = None
    _request = HEAD
    _message: bytearray | None = None
    _unansweredPings = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        # As TCP clients are named in the log and /connz (autobahn's says "tcp4:").
        self.peer = addressName(self.transport.getPeer())

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        super().dataReceived(data)

    def onConnect(self, request: Any) -> None:
        context = self.factory.context
        self.session = session = Session(context, self)
        headers = request.headers
        if session.admit() and session.checkOrigin(headers.get("origin"), headers.get("host")):
            token = bearerToken(headers.get("authorization"))
            if token is not None:
                session.authenticate(token)
            self._awaitingToken = token is None and context.config.access.expectsToken
        if self._refusal is None:
            params = request.params
            try:
                self._request = startRequest(_parameter(params, "last"), _parameter(params, "epoch"))
            except BadPosition as e:
                session.drop(Reason.BAD_REQUEST, error=f"asked for {e}")
        if self._refusal is not None:
            raise ConnectionDeny(HTTP_STATUS.get(self._refusal, 503), self._refusal.summary)

    def onOpen(self) -> None:
        session = self.session
        assert session is not None
        self._opened = True
        # twisted.web's HTTP channel was the connection's producer until the
        # upgrade; the cursor is now.
        self.transport.unregisterProducer()
        session.attach(Cursor(self.transport, self.factory.context.hub, WEBSOCKET, session))
        session.start(self._request)

    # autobahn keeps a message's pieces as a list of bytes objects, and each
    # frame's as another: a message sent as 2-byte fragments took seven times
    # its wire bytes.  streamd keeps one bytearray per message, counted in
    # --max-partial-bytes until the message is whole.

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._message = bytearray()
        assert self.session is not None
        self.session.unfinished(0)

    def onMessageFrameData(self, payload: bytes) -> None:
        message = self._message
        if self.failedByMe or message is None:
            return
        message += payload
        assert self.session is not None
        if not self.session.unfinished(len(message)):
            self._message = None

    def onMessageFrameEnd(self) -> None:
        self.frame_data = None  # type: ignore[assignment]

    def onMessageEnd(self) -> None:
        message, self._message = self._message, None
        session = self.session
        assert session is not None
        session.unfinished(None)
        if message is not None and not self.failedByMe:
            self.onMessage(bytes(message), self.message_is_binary)

    def onPing(self, payload: bytes) -> None:
        """
        Answer a ping through the cursor, in order with the stream, while
        the client takes what it is sent; a client that is not taking it is
        not answered (RFC 6455 lets a pong answer only the latest ping), and
        is cut after L{MAX_UNANSWERED_PINGS} pings.
        """
        session = self.session
        cursor = session.cursor if session is not None else None
        if cursor is None or cursor.closed:
            return
        if cursor.live:
            self._unansweredPings = 0
            cursor.sendPrivate(b"\x8a" + bytes((len(payload),)) + payload)
            return
        self._unansweredPings += 1
        if self._unansweredPings > MAX_UNANSWERED_PINGS:
            assert session is not None
            session.drop(Reason.PING_FLOOD, count=self._unansweredPings)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        assert session is not None
        if self._awaitingToken:
            self._awaitingToken = False
            session.authenticate(payload)
        else:
            session.publish([payload])

    def onPong(self, payload: bytes) -> None:
        if self.session is not None:
            self.session.answered()

    def activity(self) -> tuple[int, int]:
        acked = bytesAcked(self.transport)
        session = self.session
        return (
            self.bytesReceived,
            (session.bytesOut if session is not None else 0) if acked is None else acked,
        )

    def greeting(self, point: StartPoint, hub: Hub) -> bytes:
        greeting = b""
        if point.gap is not None:
            greeting += control({"type": "gap", **gapMessage(point.gap)})
        return greeting + control({"type": "hello", "epoch": self.factory.context.epoch, "next": point.next})

    def gapNotice(self, gap: Gap, hub: Hub) -> bytes:
        return control({"type": "gap", **gapMessage(gap)})

    def ownNotice(self, first: int, last: int, hub: Hub) -> bytes:
        return control({"type": "own", "first": first, "last": last})

    def goodbye(self, reason: Reason) -> bool:
        """
        Before the handshake is answered: refuse it with an HTTP status.
        After: say why, then close with code 4000 + the reason's code
        (autobahn sends only 1000 and the application codes), or at shutdown
        1012 (service restart), which tells any WebSocket client to come
        back.
        """
        if not self._opened:
            self._refusal = reason
            return True
        if reason is Reason.SHUTDOWN:
            self.closeHandshakeTimeout = SHUTDOWN_CLOSE_TIMEOUT
            # autobahn's sendClose refuses the registered codes, 1012 among
            # them; the integration tests check what goes out.
            close = lambda: self.sendCloseFrame(SERVICE_RESTART, reason.label.encode())  # noqa: E731
        else:
            close = lambda: self.sendClose(4000 + reason.value, reason.label)  # noqa: E731
        assert self.session is not None and self.session.cursor is not None
        self.session.cursor.sendFinal(control({"type": "bye", **byeMessage(reason)}), close)
        return True

    def _max_message_size_exceeded(self, size: int, limit: int, reason: str) -> None:
        """
        The client announced a message or frame over C{--max-message-size}:
        its session drops it as a TCP client's oversized frame.

        autobahn's own handling of this hook (a plain 1009 close, or a drop)
        counted nothing; C{tests/test_web_websocket.py} fails if autobahn
        stops calling it.
        """
        # autobahn then ignores the rest of the message instead of holding it.
        self.failedByMe = True
        assert self.session is not None
        self.session.drop(Reason.OVERSIZED_FRAME, length=size, limit=limit)

    def _protocol_violation(self, reason: str) -> bool:
        """
        The client broke the WebSocket protocol: its session drops it as a
        TCP client's malformed frame, rather than autobahn's uncounted 1002.

        @return: C{True}: autobahn reads nothing more of it.
        """
        assert self.session is not None
        self.session.drop(Reason.BAD_FRAME, error=f"broke the WebSocket protocol ({reason})")
        return True

    _invalid_payload = _protocol_violation

    def abort(self) -> None:
        """
        Close the connection now.
        """
        self.dropConnection(abort=True)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._message = None
        session, self.session = self.session, None
        if session is not None:
            # Let go of it: it refers back to this protocol.
            session.lost(f"close code {code}" if code is not None else "connection lost")


class StreamWebSocketFactory(WebSocketServerFactory):  # type: ignore[misc]
    """
    Makes a L{StreamWebSocketProtocol} for each WebSocket client.
    """

    protocol = StreamWebSocketProtocol  # type: ignore[assignment]
    log = txaio.make_logger(level=QUIET)  # type: ignore[attr-defined]

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        size = context.config.maxMessageSize
        # The session sends the heartbeat (--heartbeat), so autobahn does not.
        self.setProtocolOptions(maxMessagePayloadSize=size, maxFramePayloadSize=size, autoPingInterval=0)


class StreamWebSocketResource(WebSocketResource):  # type: ignore[misc]
    """
    C{/ws}: the upgrade takes the connection from twisted.web, which then
    counts it no more; its session does (L{StreamdChannel.upgraded}).
    """

    def render(self, request: Any) -> Any:
        request.channel.upgraded()
        return super().render(request)
