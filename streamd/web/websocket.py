"""
WebSocket subscribers at C{/ws}, with autobahn for the handshake, ping/pong,
closing and incoming messages.

Each stream message is one WebSocket message: text when it is valid UTF-8,
binary otherwise.  The daemon's own control messages are text messages that
begin with U+001E (RECORD SEPARATOR, as in RFC 7464) followed by one JSON
object; a stream message that is text beginning with that character is sent
as binary, so a page tells them apart by the first character alone::

    \\x1e{"type": "hello", "epoch": "9f2c...", "next": 1201}
    \\x1e{"type": "gap", "first": 17, "last": 1200}
    \\x1e{"type": "bye", "reason": "read_only", "code": 8}

C{hello} comes first: the next stream message has sequence number C{next},
and each one after it the next number.  A client resumes with
C{/ws?last=SEQ&epoch=EPOCH}.  C{gap} names messages it missed that left the
history.  C{bye} comes before the daemon closes the connection; the close
code is then 4000 plus the reason's code.

Once the handshake is done, the stream is written as ready-made frames by a
L{Cursor} on the connection (server frames are not masked, and no extension
is accepted), one encoding per history entry shared by every WebSocket
subscriber: the hub's fast loop, flow control and limits apply unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from struct import Struct
from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from zope.interface import implementer

from streamd.cursor import Cursor
from streamd.framing import Framing, Payload
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.resume import HEAD, Gap, StartPoint
from streamd.session import ISessionAdapter, Session
from streamd.tcpinfo import bytesAcked
from streamd.web.context import HTTP_STATUS, BadPosition, WebContext, bearerToken, gapMessage, startRequest

CONTROL = b"\x1e"
"""
The first byte of every control message.
"""

PING = b"\x89\x00"
"""
An unmasked ping frame with no payload: the heartbeat.
"""

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

_SHORT = Struct(">BBH")
_LONG = Struct(">BBQ")
_TEXT = 0x81
_BINARY = 0x82


def frame(payload: Payload) -> bytes:
    """
    One unmasked, final WebSocket frame carrying C{payload}: text when it is
    valid UTF-8 and does not begin with L{CONTROL}, binary otherwise.
    """
    data = bytes(payload)
    opcode = _BINARY
    if not data.startswith(CONTROL):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            opcode = _TEXT
    return _header(opcode, len(data)) + data


def _header(opcode: int, length: int) -> bytes:
    if length < 126:
        return bytes((opcode, length))
    if length < 65536:
        return _SHORT.pack(opcode, 126, length)
    return _LONG.pack(opcode, 127, length)


def control(message: dict[str, Any]) -> bytes:
    """
    A control message as one text frame.
    """
    data = CONTROL + json.dumps(message, separators=(",", ":")).encode()
    return _header(_TEXT, len(data)) + data


class WebSocketFraming(Framing):
    """
    Stream messages as WebSocket frames, for a L{Cursor}: the history makes
    an entry's frames once for every WebSocket subscriber.
    """

    name = "websocket"
    headerSize = 0
    maxLength = 2**63 - 1

    def encode(self, payload: bytes) -> bytes:
        return frame(payload)

    def encodeMany(self, payloads: Sequence[Payload]) -> bytes:
        return b"".join([frame(p) for p in payloads])


WEBSOCKET = WebSocketFraming()


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
        return (self.bytesReceived, (session.bytesOut if session is not None else 0) if acked is None else acked)

    def greeting(self, point: StartPoint) -> bytes:
        greeting = b""
        if point.gap is not None:
            greeting += control({"type": "gap", **gapMessage(point.gap)})
        return greeting + control({"type": "hello", "epoch": self.factory.context.epoch, "next": point.next})

    def gapNotice(self, gap: Gap) -> bytes:
        return control({"type": "gap", **gapMessage(gap)})

    def ownNotice(self, first: int, last: int) -> bytes:
        return control({"type": "own", "first": first, "last": last})

    def goodbye(self, reason: Reason) -> bool:
        """
        Before the handshake is answered: refuse it with an HTTP status.
        After: say why, then close with code 4000 + the reason's code
        (autobahn sends only 1000 and the application codes).
        """
        if not self._opened:
            self._refusal = reason
            return True
        if reason is Reason.SHUTDOWN:
            self.closeHandshakeTimeout = SHUTDOWN_CLOSE_TIMEOUT
        assert self.session is not None and self.session.cursor is not None
        self.session.cursor.sendFinal(
            control({"type": "bye", "reason": reason.label, "code": reason.value}),
            lambda: self.sendClose(4000 + reason.value, reason.label),
        )
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
        if self.session is not None:
            self.session.lost(f"close code {code}" if code is not None else "connection lost")


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
