"""
WebSocket clients at C{/ws}, and at C{/ws/SUBJECTS} for clients of several
streams: the adapter of a L{Session} to autobahn's protocol, which does the
handshake, the frames a client sends and the closing handshake.  Once the
handshake is done, the stream is written by the session's L{Cursor} (or,
for a client of several streams, by one cursor per stream through the
session's L{streamd.fanout.mux.Mux}) as frames made once per history entry
(L{streamd.web.framing}): the hub's fast loop, flow control and limits apply
unchanged.  On a TCP or UNIX connection that cursor (or mux) sends straight
to the socket, as a TCP client's does, once the transport has sent the
handshake's answer; from then on, what autobahn writes itself (a close
frame) goes through it too, so that nothing cuts into a frame begun.  With
C{--http-compress}, a client that negotiates permessage-deflate is sent the
frames compressed, made once per entry too (L{streamd.web.deflate}).

A client of several streams also sends control messages (text beginning
with U+001E, one JSON object): C{in} names the stream its messages go to,
C{subscribe} and C{unsubscribe} change what it is sent.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from zope.interface import implementer

from streamd.auth import Access
from streamd.fanout.cursor import Cursor
from streamd.fanout.hub import Hub
from streamd.fanout.mux import Mux
from streamd.fanout.resume import HEAD, Gap, StartPoint, StartRequest
from streamd.fanout.socketcursor import bigReadLimit, cursorFor
from streamd.framing import Framing
from streamd.listen.tcpinfo import bytesAcked
from streamd.names import BadName, isPattern
from streamd.protocol import addressName
from streamd.reads import readTarget
from streamd.reasons import Reason
from streamd.session import ISessionAdapter, Session
from streamd.web.context import BadPosition, Refusal, WebContext, bearerToken, startRequest
from streamd.web.deflate import Deflater, Inflater, acceptOffer, namedStreamFraming, streamFraming
from streamd.web.framing import (
    CONTROL,
    PING,
    WEBSOCKET,
    StreamWebSocketFraming,
    byeMessage,
    control,
    gapMessage,
    refusedMessage,
    streamMessage,
)
from streamd.web.subjects import (
    StreamsRequest,
    parsePosition,
    requestRefusal,
    streamsRequest,
    subscribeRefusal,
)

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


MAX_PONGS_PER_READ = 16
"""
Pongs a client may send in one read; the daemon asks for one per
C{--heartbeat}, so more is a flood of frames that each cost the daemon
time and carry nothing (C{bad_frame}).
"""

MAX_FRAGMENTS = 1024
"""
Frames one message may come in, or one per KiB of C{--max-message-size}
if that is more (L{fragmentLimit}): past that, a flood of tiny fragments
that each cost the daemon time is cut (C{bad_frame}).
"""


def fragmentLimit(maxMessageSize: int) -> int:
    """
    The most frames one message may come in: a message of the largest
    size in 1 KiB pieces, and never fewer than L{MAX_FRAGMENTS}.
    """
    return max(MAX_FRAGMENTS, maxMessageSize // 1024)


SERVICE_RESTART = 1012
"""
The close code of a shutdown (RFC 6455's registry: "Service Restart").
"""


PATH = "/ws"
"""
The path of the default stream's clients; C{/ws/SUBJECTS} is that of
clients of several streams.
"""


def _parameter(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


class BadControl(ValueError):
    """
    A client's control message is not one: its str says why.
    """


_CONTROLS = {"in": "stream", "subscribe": "subject", "unsubscribe": "subject"}


def clientControl(data: bytes) -> tuple[str, str, dict[str, StartRequest]]:
    """
    The kind of the control message C{data} (its JSON object), the stream
    or subject it names, and the positions a C{subscribe} resumes
    (C{after}): C{{"type": "in", "stream": NAME}}, C{{"type": "subscribe",
    "subject": SUBJECT, "after": [POSITION, ...]}} or C{{"type":
    "unsubscribe", "subject": SUBJECT}}.

    @raise BadControl: for anything else.
    """
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise BadControl("not JSON, or nested too deep") from None
    kind = message.get("type") if isinstance(message, dict) else None
    key = _CONTROLS.get(kind) if isinstance(kind, str) else None
    if kind is None or key is None:
        raise BadControl(f"no type of {', '.join(_CONTROLS)}")
    subject = message.get(key)
    after = message.get("after", []) if kind == "subscribe" else []
    if not (isinstance(subject, str) and isinstance(after, list) and all(isinstance(p, str) for p in after)):
        raise BadControl(f"{kind} needs a {key}, and after, if any, a list of positions")
    try:
        return kind, subject, dict(parsePosition(position) for position in after)
    except BadPosition as e:
        raise BadControl(str(e))


@implementer(ISessionAdapter)
class StreamWebSocketProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """
    One WebSocket client: gets the stream (or the streams it asks for), and
    publishes what it sends, under its L{Session}'s rules.
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
    # The most the transport reads at once once the connection is open
    # (L{bigReadLimit}), or None where Twisted's size stays.
    readLimit: int | None = None
    _awaitingToken = False
    _opened = False
    _refusal: Refusal | None = None
    _request = HEAD
    _streams: StreamsRequest | None = None
    _target: str | None = None
    _message: bytearray | None = None
    _ping: bytes | None = None
    _pongHeld: int | None = None
    _pongs = 0
    _fragments = 0
    _flooded = False
    _deflater: Deflater | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # As TCP clients are named in the log and /connz (autobahn's says "tcp4:").
        self.peer = addressName(self.transport.getPeer())

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        self._pongs = 0
        super().dataReceived(data)
        self._answerPing()
        limit = self.readLimit
        if limit is not None:
            self.transport.bufferSize = readTarget(len(data), limit)

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
            self._ask(request.path, request.params)
        if self._refusal is not None:
            raise ConnectionDeny(self._refusal.status, self._refusal.text)

    def _ask(self, path: str, params: dict[str, list[str]]) -> None:
        """
        Read what the client asks for: where the default stream starts
        (C{/ws?last=SEQ&epoch=EPOCH}), or which streams it is sent and
        where those it knows resume (C{/ws/SUBJECTS?after=POSITION}); a
        client that may read now is refused a stream it cannot have with an
        HTTP status.
        """
        session = self.session
        assert session is not None
        if path == PATH:
            try:
                self._request = startRequest(_parameter(params, "last"), _parameter(params, "epoch"))
            except BadPosition as e:
                self._refuse(requestRefusal(e))
            return
        try:
            asked = streamsRequest(unquote(path[len(PATH) + 1 :]), params)
        except (BadName, BadPosition) as e:
            self._refuse(requestRefusal(e))
            return
        refusal = subscribeRefusal(session, asked.subjects) if session.access is not Access.NONE else None
        if refusal is not None:
            self._refuse(refusal)
            return
        self._streams = asked
        if len(asked.subjects) == 1 and not isPattern(asked.subjects[0]):
            self._target = asked.subjects[0]

    def _refuse(self, refusal: Refusal) -> None:
        """
        Refuse the handshake with C{refusal}, counted and logged as its
        session's goodbye.
        """
        assert self.session is not None
        self._refusal = refusal
        self.session.drop(refusal.reason, **refusal.figures)

    def onOpen(self) -> None:
        session = self.session
        assert session is not None
        self._opened = True
        if self._perMessageCompress is not None:
            # permessage-deflate was negotiated (acceptOffer); autobahn
            # inflates through this attribute, which the zip bomb tests of
            # tests/test_web_deflate.py fail without.
            self._deflater = self.factory.context.deflater
            self._perMessageCompress = Inflater.negotiated(
                self._perMessageCompress, self.factory.context.config.maxMessageSize, self._inflateFailed
            )
        # twisted.web's HTTP channel was the connection's producer until the
        # upgrade; the cursor (or the mux of several streams) is now.  The
        # transport still holds the handshake's answer, which goes first.
        self.transport.unregisterProducer()
        self.readLimit = bigReadLimit(self.transport)
        asked = self._streams
        if asked is None:
            hub = self.factory.context.hub
            framing = WEBSOCKET if self._deflater is None else streamFraming(hub, self._deflater)
            session.attach(cursorFor(self.transport, hub, framing, session, afterTransport=True))
            session.start(self._request)
            return
        session.startStreams(direct=True, afterTransport=True)
        for subject in asked.subjects:
            session.subscribe(subject, asked.start, asked.positions)

    # autobahn keeps a message's pieces as a list of bytes objects, and each
    # frame's as another: a message sent as 2-byte fragments took seven times
    # its wire bytes.  streamd keeps one bytearray per message, counted in
    # --max-partial-bytes until the message is whole.

    def processData(self) -> bool:
        """
        Parse the next frame autobahn holds, unless the client was cut for
        a flood of frames: then what it sent is dropped unparsed, since
        each frame would cost the daemon time until the close times out.
        """
        if self._flooded:
            self.data = b""
            return False
        return super().processData()  # type: ignore[no-any-return]

    def _flood(self, reason: Reason, **figures: Any) -> None:
        """
        Cut the client for a flood of frames, and read nothing more of it.
        """
        assert self.session is not None
        self.session.drop(reason, **figures)
        self._stopReading()

    def _stopReading(self) -> None:
        """
        Read and parse nothing more of a client cut for a flood of frames.
        """
        self._flooded = True
        self.transport.pauseProducing()
        self._message = None

    def onMessageBegin(self, isBinary: bool) -> None:
        super().onMessageBegin(isBinary)
        self._message = bytearray()
        self._fragments = 0
        assert self.session is not None
        self.session.unfinished(0)

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        self._fragments += 1
        limit = self.factory.fragmentLimit
        if self._fragments > limit and not self._flooded:
            self._flood(Reason.BAD_FRAME, error=f"sent a message in more than {limit} frames")

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
        Note a ping, to be answered once its read is handled (RFC 6455 lets
        a pong answer only the latest ping); a client is cut after
        L{streamd.session.MAX_UNANSWERED_PINGS} pings without a pong.
        """
        session = self.session
        if session is None or session.outlet is None or session.outlet.closed:
            return
        self._ping = payload
        if not session.pinged():
            self._stopReading()

    def _answerPing(self) -> None:
        """
        Answer the last ping of a read through the stream, in order with
        it, if the client takes what it is sent; one that is not taking it
        is not answered.
        """
        payload, self._ping = self._ping, None
        session = self.session
        if payload is None or session is None:
            return
        outlet = session.outlet
        if outlet is None or outlet.closed or not self._takes(outlet):
            return
        session.pongTaken()
        before = outlet.written
        outlet.sendPrivate(b"\x8a" + bytes((len(payload),)) + payload)
        self._pongHeld = before if outlet.written == before else None

    def _takes(self, outlet: Cursor | Mux) -> bool:
        """
        Whether the client takes what it is sent: its cursor is caught up;
        for a client of several streams, its connection took the last pong
        it was given (a mux holds what it is given while the connection is
        full, and tells nobody).
        """
        if isinstance(outlet, Cursor):
            return outlet.live
        return outlet.written != self._pongHeld

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        assert session is not None
        if self._awaitingToken:
            self._awaitingToken = False
            session.authenticate(payload)
        elif self._streams is None:
            session.publish([payload])
        elif not isBinary and payload.startswith(CONTROL):
            self._controlReceived(payload[1:])
        elif self._target is None:
            session.drop(Reason.BAD_REQUEST, error='sent a message before naming its stream ({"type":"in"})')
        else:
            session.publish([payload], stream=self._target)

    def _controlReceived(self, data: bytes) -> None:
        """
        A control message of a client of several streams: C{in},
        C{subscribe} or C{unsubscribe}; anything else is a bad request.
        """
        session = self.session
        assert session is not None
        try:
            kind, subject, positions = clientControl(data)
        except BadControl as e:
            session.drop(Reason.BAD_REQUEST, error=f"sent a control message that is not one: {e}")
            return
        if kind == "in":
            self._target = subject
        elif kind == "subscribe":
            session.subscribe(subject, StreamsRequest((subject,), positions).start, positions)
        else:
            session.unsubscribe(subject)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        What autobahn writes itself: through the session's outlet, in order
        with the stream, while it is open; else (the handshake's answer, a
        refusal, a close frame after the goodbye) through the transport.
        """
        outlet = self._outlet()
        if outlet is None:
            super().sendData(data, sync, chopsize)
        else:
            outlet.sendPrivate(data)

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        """
        A close frame (an answer to the client's, above all) ends the
        stream: it follows the frame begun, and nothing follows it.
        """
        outlet = self._outlet()
        if outlet is None or self.state != self.STATE_OPEN:
            super().sendCloseFrame(code, reasonUtf8, isReply)
            return
        close = super().sendCloseFrame
        outlet.sendFinal(b"", lambda: close(code, reasonUtf8, isReply))

    def _outlet(self) -> Cursor | Mux | None:
        """
        The session's outlet, once the connection is open and while the
        outlet sends.
        """
        session = self.session
        outlet = session.outlet if self._opened and session is not None else None
        return None if outlet is None or outlet.closed else outlet

    def onPong(self, payload: bytes) -> None:
        session = self.session
        if session is None:
            return
        self._pongs += 1
        if self._pongs > MAX_PONGS_PER_READ:
            self._flood(Reason.BAD_FRAME, error=f"sent more than {MAX_PONGS_PER_READ} pongs in one read")
        else:
            session.answered()

    def activity(self) -> tuple[int, int]:
        acked = bytesAcked(self.transport)
        session = self.session
        return (
            self.bytesReceived,
            (session.bytesOut if session is not None else 0) if acked is None else acked,
        )

    def greeting(self, point: StartPoint | None, hub: Hub) -> bytes:
        """
        C{hello} (after the gap the stream starts after, if any); for a
        client of several streams, C{hello} first, then C{stream} (and its
        gap) as each stream starts.
        """
        if point is None:
            return control({"type": "hello"})
        if self._streams is not None:
            announcement = control({"type": "stream", **streamMessage(hub, point)})
            return announcement + (b"" if point.gap is None else self.gapNotice(point.gap, hub))
        greeting = b""
        if point.gap is not None:
            greeting += control({"type": "gap", **gapMessage(point.gap)})
        return greeting + control({"type": "hello", "epoch": self.factory.context.epoch, "next": point.next})

    def gapNotice(self, gap: Gap, hub: Hub) -> bytes:
        return control({"type": "gap", **gapMessage(gap, self._named(hub))})

    def ownNotice(self, first: int, last: int, hub: Hub) -> bytes:
        stream = self._named(hub)
        message = {"type": "own"} if stream is None else {"type": "own", "stream": stream}
        return control({**message, "first": first, "last": last})

    def _named(self, hub: Hub) -> str | None:
        """
        The name of C{hub}'s stream, for a client of several streams.
        """
        return None if self._streams is None else hub.name

    def framingFor(self, hub: Hub) -> Framing:
        if self._deflater is not None:
            return namedStreamFraming(hub, self._deflater)
        return hub.framing(StreamWebSocketFraming, lambda: StreamWebSocketFraming(hub.name))

    def refusal(self, subject: str, why: str) -> bytes:
        return control({"type": "refused", **refusedMessage(subject, why)})

    def goodbye(self, reason: Reason) -> bool:
        """
        Before the handshake is answered: refuse it with an HTTP status.
        After: say why, then close with code 4000 + the reason's code
        (autobahn sends only 1000 and the application codes), or at shutdown
        1012 (service restart), which tells any WebSocket client to come
        back.
        """
        if not self._opened:
            if self._refusal is None or self._refusal.reason is not reason:
                self._refusal = Refusal.of(reason)
            return True
        if reason is Reason.SHUTDOWN:
            self.closeHandshakeTimeout = SHUTDOWN_CLOSE_TIMEOUT
            # autobahn's sendClose refuses the registered codes, 1012 among
            # them; the integration tests check what goes out.
            close = lambda: self.sendCloseFrame(SERVICE_RESTART, reason.label.encode())  # noqa: E731
        else:
            close = lambda: self.sendClose(4000 + reason.value, reason.label)  # noqa: E731
        outlet = self.session.outlet if self.session is not None else None
        assert outlet is not None
        outlet.sendFinal(control({"type": "bye", **byeMessage(reason)}), close)
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

    def _inflateFailed(self, why: str) -> None:
        """
        A compressed message does not inflate, or inflates past
        C{--max-message-size}: its session drops it as a malformed frame.
        """
        # autobahn's own bookkeeping of the message stops here too.
        self.failedByMe = True
        assert self.session is not None
        self.session.drop(Reason.BAD_FRAME, error=why)

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
        self.fragmentLimit = fragmentLimit(size)
        # The session sends the heartbeat (--heartbeat), so autobahn does not.
        self.setProtocolOptions(maxMessagePayloadSize=size, maxFramePayloadSize=size, autoPingInterval=0)
        if context.deflater is not None:
            self.setProtocolOptions(perMessageCompressionAccept=acceptOffer)


class StreamWebSocketResource(WebSocketResource):  # type: ignore[misc]
    """
    C{/ws}: the upgrade takes the connection from twisted.web, which then
    counts it no more; its session does (L{StreamdChannel.upgraded}).
    """

    def render(self, request: Any) -> Any:
        request.channel.upgraded()
        return super().render(request)
