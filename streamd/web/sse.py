"""
Server-Sent Events clients at C{/events}, and at C{/events/SUBJECTS} for
clients of several streams, for a browser's C{EventSource} and for C{curl
-N}: the adapter of a L{Session} to one request, and then to its
connection.  Its L{Cursor} (or, for a client of several streams, its cursor
on each through the session's L{streamd.fanout.mux.Mux}) writes to the
connection, so the events of a history entry are made once for all
subscribers (L{streamd.web.framing}) and held nowhere else, and flow
control and the limits are those of every other subscriber.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from streamd.auth import Access, originAllowed
from streamd.fanout.cursor import Cursor
from streamd.fanout.hub import Hub
from streamd.fanout.resume import Gap, StartPoint, StartRequest
from streamd.fanout.socketcursor import cursorFor
from streamd.framing import Framing
from streamd.listen.tcpinfo import bytesAcked
from streamd.names import BadName
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.session import ISessionAdapter, Session
from streamd.web.context import Refusal, WebContext, bearerToken, parseEventId, startRequest
from streamd.web.framing import (
    KEEPALIVE,
    LAST_CHUNK,
    EventFraming,
    StreamEventFraming,
    byeMessage,
    chunk,
    gapMessage,
    namedEvent,
    refusedMessage,
    streamMessage,
)
from streamd.web.parse import BadInput, header
from streamd.web.subjects import StreamsRequest, requestRefusal, streamsRequest, subscribeRefusal

RETRY_MS = 1000
"""
How long a disconnected C{EventSource} waits before reconnecting.
"""

_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\nConnection: close\r\n"
)
_CHUNKED = b"Transfer-Encoding: chunked\r\n"


def takeOver(request: Request, protocol: Protocol) -> Any:
    """
    The connection of C{request}, taken from twisted.web and given to
    C{protocol}, as autobahn takes a WebSocket's: what C{protocol} writes
    goes to it as it is, and twisted.web's buffers hold none of it.
    """
    channel: Any = request.channel
    channel.upgraded()
    transport, channel.transport = channel.transport, None
    transport.unregisterProducer()
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    # twisted.web may have paused reading while it served the request.
    transport.resumeProducing()
    return transport


@implementer(ISessionAdapter)
class EventStream(Protocol):
    """
    One SSE client: the adapter of its L{Session} to one request, then to
    its connection.  A refusal answers the request; once the stream starts,
    the connection is this stream's, the response's head its greeting's
    first bytes, and its cursor writes to the connection itself (as a TCP
    client's does), so that a client that stops reading holds nothing but
    its place in the history.

    @ivar several: whether it is a client of several streams
        (C{/events/SUBJECTS}), whose events say their stream.
    """

    kind = "sse"
    protocol = "sse"
    ping = KEEPALIVE
    pingAnswered = False
    several = False
    bytesReceived = 0
    transport: Any = None
    _refusal: Refusal | None = None

    def __init__(self, context: WebContext, request: Request, peer: str, head: bytes, chunked: bool) -> None:
        self.context = context
        self.request: Request | None = request
        self.peer = peer
        self.head = head
        self.chunked = chunked
        self.ping = self._frame(KEEPALIVE)
        self.session: Session | None = Session(context, self)

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost(reason.getErrorMessage())

    def activity(self) -> tuple[int, int]:
        acked = bytesAcked(self.transport) if self.transport is not None else None
        assert self.session is not None
        return (self.bytesReceived, self.session.bytesOut if acked is None else acked)

    def greeting(self, point: StartPoint | None, hub: Hub) -> bytes:
        """
        The response's head, C{retry:}, then C{hello} (after the gap the
        stream starts after, if any); for a client of several streams,
        C{hello} first, then C{stream} (and its gap) as each stream starts.
        """
        if point is None:
            greeting = b"retry: %d\n\n" % RETRY_MS + namedEvent("hello", {})
        elif self.several:
            greeting = namedEvent("stream", streamMessage(hub, point))
            if point.gap is not None:
                greeting += namedEvent("gap", gapMessage(point.gap, hub.name))
        else:
            greeting = b"retry: %d\n\n" % RETRY_MS
            if point.gap is not None:
                greeting += namedEvent("gap", gapMessage(point.gap))
            greeting += namedEvent("hello", {"epoch": self.context.epoch, "next": point.next})
        return self._head() + self._frame(greeting)

    def gapNotice(self, gap: Gap, hub: Hub) -> bytes:
        return self._frame(namedEvent("gap", gapMessage(gap, hub.name if self.several else None)))

    def ownNotice(self, first: int, last: int, hub: Hub) -> None:
        return None

    def framingFor(self, hub: Hub) -> Framing:
        chunked = self.chunked
        return hub.framing(
            (StreamEventFraming, chunked), lambda: StreamEventFraming(hub.name, hub.history, chunked)
        )

    def refusal(self, subject: str, why: str) -> bytes:
        return self._frame(namedEvent("refused", refusedMessage(subject, why)))

    def goodbye(self, reason: Reason) -> bool:
        """
        Before the stream: an HTTP error.  After: a C{bye} event after the
        events begun (at shutdown, after a C{retry:} with its random wait),
        then the end of the connection.
        """
        assert self.session is not None
        outlet = self.session.outlet
        if outlet is None:
            request = self.request
            assert request is not None
            refusal = self._refusal
            if refusal is None or refusal.reason is not reason:
                refusal = self._refusal = Refusal.of(reason)
            request.setResponseCode(refusal.status)
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            if reason is Reason.AUTH_FAILED:
                request.setHeader("WWW-Authenticate", "Bearer")
            return True
        bye = byeMessage(reason)
        retry = b"retry: %d\n\n" % bye["retry"] if "retry" in bye else b""
        end = LAST_CHUNK if self.chunked else b""
        outlet.sendFinal(self._head() + self._frame(retry + namedEvent("bye", bye)) + end)
        return True

    def _frame(self, data: bytes) -> bytes:
        """
        C{data} as the answer's body carries it: one chunk, or as it is.
        """
        return chunk(data) if self.chunked else data

    def _head(self) -> bytes:
        """
        The response's head the first time, then nothing.
        """
        head, self.head = self.head, b""
        return head

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    def refuse(self, refusal: Refusal) -> bytes | None:
        """
        Answer the request with C{refusal}, counted and logged as its
        session's goodbye.
        """
        assert self.session is not None
        self._refusal = refusal
        self.session.drop(refusal.reason, **refusal.figures)
        return self.refused()

    def refused(self) -> bytes | None:
        """
        The body of the HTTP error that answers the request instead of the
        stream, once its session refused it: the session ends with it.
        """
        self._lost("refused")
        return None if self._refusal is None else self._refusal.text.encode() + b"\n"

    def failed(self) -> bool:
        """
        Something failed unexpectedly while the stream began: the session
        ends, and the connection too, if it was taken over.

        @return: whether the request is still twisted.web's to answer (with
            a 500).
        """
        self._lost("failed")
        if self.transport is None:
            return True
        self.transport.abortConnection()
        return False

    def _lost(self, why: str) -> None:
        """
        The session ends; let go of it (it refers back to this stream).
        """
        session, self.session = self.session, None
        if session is not None:
            session.lost(why)


class EventsResource(Resource):
    """
    C{/events} and C{/events/SUBJECTS}: a stream of events per request.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        self.framing = EventFraming(context.hub.history)
        self.chunked = EventFraming(context.hub.history, chunked=True)

    def render_GET(self, request: Request) -> Any:
        chunked = request.clientproto == b"HTTP/1.1"
        stream = EventStream(self.context, request, addressName(request.getClientAddress()), b"", chunked)
        session = stream.session
        assert session is not None
        if not session.admit(request.channel):
            return stream.refused()
        # Nothing may leave an admitted session without its connection: it
        # would hold a client's place (--max-clients) until the daemon stops.
        try:
            return self._begin(stream, request)
        except (BadInput, BadName) as e:
            return stream.refuse(requestRefusal(e))
        except Exception:
            if stream.failed():
                raise
            self.log.failure("the stream of {peer} failed as it began", peer=stream.peer)
            return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> bytes:
        """
        A stream's C{Content-Type}, and no stream: an answer to C{HEAD} has
        no body, and this one checks nothing.
        """
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-cache")
        return b""

    def _begin(self, stream: EventStream, request: Request) -> Any:
        """
        Check the admitted C{stream}'s request (origin, token, what it asks
        for), then start it on the request's connection, taken over.

        @raise BadInput: for a request that does not parse.
        @raise BadName: for a subject that does not.
        """
        context = self.context
        session = stream.session
        assert session is not None
        origin = header(request, b"origin")
        head = _HEAD
        if origin is not None and originAllowed(origin, None, context.config.httpOrigins):
            head += b"Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n" % origin.encode("utf-8")
        if stream.chunked:
            head += _CHUNKED
        stream.head = head + b"\r\n"
        if not session.checkOrigin(origin, header(request, b"host")):
            return stream.refused()
        token = bearerToken(request.getHeader(b"authorization")) or _argument(request, b"token", raw=True)
        if token is not None:
            if not session.authenticate(token):
                return stream.refused()
        elif session.access is Access.NONE:
            session.drop(Reason.AUTH_FAILED)
            return stream.refused()
        asked: StreamsRequest | None = None
        if request.postpath:
            asked = _streamsAsked(request)
            refusal = subscribeRefusal(session, asked.subjects)
            if refusal is not None:
                return stream.refuse(refusal)
        else:
            where = _startAsked(request)
        # The first request of its connection has nothing of twisted.web's
        # left to send: its cursor may write to the socket itself.
        first = not getattr(request.channel, "answered", 0)
        transport = takeOver(request, stream)
        stream.request = None
        if asked is not None:
            stream.several = True
            session.startStreams()
            for subject in asked.subjects:
                session.subscribe(subject, asked.start, asked.positions)
            return NOT_DONE_YET
        framing = self.chunked if stream.chunked else self.framing
        cursor = (
            cursorFor(transport, context.hub, framing, session)
            if first
            else Cursor(transport, context.hub, framing, session)
        )
        session.attach(cursor)
        session.start(where)
        return NOT_DONE_YET


def _startAsked(request: Request) -> StartRequest:
    """
    Where a client of C{/events} asks the default stream to start: after
    its C{Last-Event-ID}, or its C{?last=SEQ&epoch=EPOCH}, or at the head.

    @raise BadInput: for a position that does not parse.
    """
    eventId = header(request, b"last-event-id")
    if eventId:
        epoch, last = parseEventId(eventId)
    else:
        epoch, last = _argument(request, b"epoch"), _argument(request, b"last")
    return startRequest(last, epoch)


def _streamsAsked(request: Request) -> StreamsRequest:
    """
    What a client of C{/events/SUBJECTS} asks for.

    @raise BadName: for subjects that do not parse.
    @raise BadInput: for a position that does not.
    """
    subjects = b"/".join(request.postpath or ()).decode("utf-8", "replace")
    parameters = {
        name.decode("ascii", "replace"): [value.decode("ascii", "replace") for value in values]
        for name, values in request.args.items()
    }
    return streamsRequest(subjects, parameters, header(request, b"last-event-id"))


def _argument(request: Request, name: bytes, raw: bool = False) -> Any:
    values = request.args.get(name)
    if not values:
        return None
    return values[0] if raw else values[0].decode("utf-8", "replace")
