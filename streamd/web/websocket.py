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

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from streamd.auth import Access
from streamd.cursor import Cursor
from streamd.framing import Framing, Payload
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.web.context import WebContext, bearerToken
from streamd.web.resume import catchUp, parsePosition, subscribe

CONTROL = b"\x1e"
"""
The first byte of every control message.
"""

PING_INTERVAL = 15.0
PING_TIMEOUT = 30.0

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


class StreamWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    One WebSocket client: gets the stream, and publishes what it sends
    under the same rules as a TCP client.
    """

    log = Logger()
    kind = "websocket"
    factory: StreamWebSocketFactory
    transport: Any
    peer = ""
    cursor: Cursor | None = None
    access = Access.NONE
    messagesIn = 0
    bytesIn = 0
    since = 0.0
    _after: int | None = None
    _awaitingToken = False
    _counted = False
    _published = False
    _authCall: IDelayedCall | None = None

    @property
    def messagesOut(self) -> int:
        return self.cursor.messages if self.cursor is not None else 0

    @property
    def bytesOut(self) -> int:
        return self.cursor.written if self.cursor is not None else 0

    def connectionMade(self) -> None:
        super().connectionMade()
        # As TCP clients are named in the log and /connz (autobahn's says "tcp4:").
        self.peer = addressName(self.transport.getPeer())

    def onConnect(self, request: Any) -> None:
        context = self.factory.context
        if context.full(self.peer):
            raise ConnectionDeny(503, "too many clients")
        token = bearerToken(request.headers.get("authorization"))
        self.access = context.accessFor(token)
        if token is not None and self.access is Access.NONE:
            context.hub.stats.authFailures += 1
            self.log.warn("{peer} sent a wrong token; refused", peer=self.peer)
            raise ConnectionDeny(401, "wrong token")
        self._awaitingToken = token is None and context.config.access.expectsToken
        params = request.params
        self._after = parsePosition(_parameter(params, "last"), _parameter(params, "epoch"), context.epoch)

    def onOpen(self) -> None:
        context = self.factory.context
        # twisted.web's HTTP channel was the connection's producer until the
        # upgrade (C{producer} on TCP, C{_producer} on TLS); the cursor is now.
        transport = self.transport
        if (
            getattr(transport, "producer", None) is not None
            or getattr(transport, "_producer", None) is not None
        ):
            transport.unregisterProducer()
        self.cursor = Cursor(self.transport, context.hub, WEBSOCKET, self)
        context.connected(self)
        self._counted = True
        if self.access is Access.NONE:
            self._authCall = context.clock.callLater(context.config.authTimeout, self._authTimedOut)
        else:
            self._start()

    def _start(self) -> None:
        cursor = self.cursor
        assert cursor is not None
        start = subscribe(cursor, self._after)
        greeting = b""
        if start.gap is not None:
            greeting += control({"type": "gap", "first": start.gap[0], "last": start.gap[1]})
        greeting += control({"type": "hello", "epoch": self.factory.context.epoch, "next": start.next})
        catchUp(cursor, start, greeting)

    def _control(self, message: dict[str, Any]) -> None:
        data = control(message)
        cursor = self.cursor
        if cursor is not None and not cursor.closed:
            cursor.sendPrivate(data)
        else:
            self.transport.write(data)  # refused: no cursor (or closed), nothing else writes

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._awaitingToken:
            self._authenticate(payload)
            return
        if self.access is not Access.PUBLISH:
            self.log.warn("{peer} is read-only but sent a message; rejected, disconnecting", peer=self.peer)
            self.factory.context.hub.stats.rejectedPublishers += 1
            self._refuse(Reason.READ_ONLY)
            return
        hub = self.factory.context.hub
        if not self._published:
            self._published = True
            hub.addPublisher(self.transport, waits=False)
        hub.publish([payload], sender=self.cursor)
        self.messagesIn += 1
        self.bytesIn += len(payload)

    def _authenticate(self, token: bytes) -> None:
        """
        Take the client's first message as its token.
        """
        self._awaitingToken = False
        if self._authCall is not None:
            self._authCall.cancel()
            self._authCall = None
        wasReading = self.access is not Access.NONE
        self.access = max(self.access, self.factory.context.accessFor(token))
        if self.access is Access.NONE or (wasReading and self.access is Access.READ):
            self.log.warn("{peer} sent a wrong token; disconnecting", peer=self.peer)
            self.factory.context.hub.stats.authFailures += 1
            self._refuse(Reason.AUTH_FAILED)
            return
        self.log.info("{peer} authenticated ({access})", peer=self.peer, access=self.access.name.lower())
        if not wasReading:
            self._start()

    def _authTimedOut(self) -> None:
        self._authCall = None
        self.log.warn("{peer} sent no token in time; disconnecting", peer=self.peer)
        self.factory.context.hub.stats.authFailures += 1
        self._refuse(Reason.AUTH_TIMEOUT)

    def _refuse(self, reason: Reason) -> None:
        """
        Say why, then close with code 4000 + the reason's code (autobahn
        sends only 1000 and the application codes).
        """
        if self.cursor is not None:
            self.cursor.abandon()
        self._control({"type": "bye", "reason": reason.label, "code": reason.value})
        self.sendClose(4000 + reason.value, reason.label)

    def _max_message_size_exceeded(self, size: int, limit: int, reason: str) -> None:
        """
        The client announced a message or frame over C{--max-message-size}:
        count it as a TCP client's oversized frame is, say why, and close.

        autobahn's own handling of this hook (a plain 1009 close, or a drop)
        counted nothing; C{tests/test_web_websocket.py} fails if autobahn
        stops calling it.
        """
        self.log.warn(
            "{peer} sent a {size}-byte WebSocket message, over the {limit}-byte limit; disconnecting",
            peer=self.peer,
            size=size,
            limit=limit,
        )
        self.factory.context.hub.stats.oversizedFrameDisconnects += 1
        # autobahn then ignores the rest of the message instead of holding it.
        self.failedByMe = True
        self._refuse(Reason.OVERSIZED_FRAME)

    def slowConsumer(self, reason: Reason, behind: int) -> None:
        """
        The hub cuts this client, by the same rules as a TCP one.
        """
        self.factory.context.tooSlow(self.peer, reason, behind)
        if self.cursor is not None:
            self.cursor.abandon()
        self.dropConnection(abort=True)

    def close(self) -> None:
        """
        The daemon is stopping: send what this client is behind by, then
        say so, and close.
        """
        self.closeHandshakeTimeout = SHUTDOWN_CLOSE_TIMEOUT
        cursor = self.cursor
        if cursor is None or cursor.closed:
            self._refuse(Reason.SHUTDOWN)
            return
        cursor.close(then=lambda: self._refuse(Reason.SHUTDOWN))

    def abort(self) -> None:
        """
        Close the connection now.
        """
        self.dropConnection(abort=True)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._authCall is not None and self._authCall.active():
            self._authCall.cancel()
        self._authCall = None
        if self.cursor is not None:
            self.cursor.abandon()
        if self._published:
            self.factory.context.hub.removePublisher(self.transport)
        if self._counted:
            self._counted = False
            self.factory.context.disconnected(self)


class StreamWebSocketFactory(WebSocketServerFactory):  # type: ignore[misc]
    """
    Makes a L{StreamWebSocketProtocol} for each WebSocket client.
    """

    protocol = StreamWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        size = context.config.maxMessageSize
        self.setProtocolOptions(
            maxMessagePayloadSize=size,
            maxFramePayloadSize=size,
            autoPingInterval=PING_INTERVAL,
            autoPingTimeout=PING_TIMEOUT,
        )
