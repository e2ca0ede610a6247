"""
Server-Sent Events clients at C{/events}, for a browser's C{EventSource}
and for C{curl -N}: the adapter of a L{Session} to one request.  Its
L{Cursor} writes through the request, so the events of a history entry are
made once for all subscribers (L{streamd.web.framing}), and flow control and
the limits are those of every other subscriber.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from streamd.auth import Access, originAllowed
from streamd.cursor import Cursor
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.resume import Gap, StartPoint
from streamd.session import ISessionAdapter, Session
from streamd.tcpinfo import bytesAcked
from streamd.web.context import (
    HTTP_STATUS,
    BadPosition,
    WebContext,
    bearerToken,
    parseEventId,
    startRequest,
)
from streamd.web.framing import KEEPALIVE, EventFraming, gapMessage, namedEvent

RETRY_MS = 1000
"""
How long a disconnected C{EventSource} waits before reconnecting.
"""


class _RequestTransport:
    """
    What a L{Cursor} writes through: the response of one request.
    """

    def __init__(self, request: Request) -> None:
        self.request = request

    def write(self, data: bytes) -> None:
        self.request.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.request.unregisterProducer()

    def loseConnection(self) -> None:
        self.request.finish()

    def abortConnection(self) -> None:
        transport: Any = self.request.channel.transport
        if transport is not None:
            transport.abortConnection()


@implementer(ISessionAdapter)
class EventStream:
    """
    One SSE client: the adapter of its L{Session} to one request.

    @ivar refusal: the body of the HTTP error that answers the request
        instead of the stream, once its session refused it.
    """

    kind = "sse"
    protocol = "sse"
    ping = KEEPALIVE
    pingAnswered = False
    refusal: bytes | None = None

    def __init__(self, context: WebContext, request: Request, peer: str) -> None:
        self.context = context
        self.request = request
        self.peer = peer
        self.transport = _RequestTransport(request)
        self.session = Session(context, self)
        request.notifyFinish().addBoth(self._finished)

    def activity(self) -> tuple[int, int]:
        channel: Any = self.request.channel
        acked = bytesAcked(channel.transport) if channel is not None else None
        return (0, self.session.bytesOut if acked is None else acked)

    def greeting(self, point: StartPoint) -> bytes:
        greeting = b"retry: %d\n\n" % RETRY_MS
        if point.gap is not None:
            greeting += namedEvent("gap", gapMessage(point.gap))
        return greeting + namedEvent("hello", {"epoch": self.context.epoch, "next": point.next})

    def gapNotice(self, gap: Gap) -> bytes:
        return namedEvent("gap", gapMessage(gap))

    def ownNotice(self, first: int, last: int) -> None:
        return None

    def goodbye(self, reason: Reason) -> bool:
        """
        Before the stream: an HTTP error.  After: a C{bye} event after the
        events begun, then the end of the response.
        """
        cursor = self.session.cursor
        if cursor is None:
            request = self.request
            request.setResponseCode(HTTP_STATUS.get(reason, 503))
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            if reason is Reason.AUTH_FAILED:
                request.setHeader("WWW-Authenticate", "Bearer")
            self.refusal = reason.summary.encode() + b"\n"
            return True
        cursor.sendFinal(namedEvent("bye", {"reason": reason.label, "code": reason.value}))
        return True

    def abort(self) -> None:
        self.transport.abortConnection()

    def _finished(self, result: object) -> None:
        why = getattr(result, "getErrorMessage", lambda: "the response ended")()
        self.session.lost(why)


class EventsResource(Resource):
    """
    C{/events}: a stream of events per request.
    """

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        self.framing = EventFraming(context.hub.history)

    def render_GET(self, request: Request) -> Any:
        context = self.context
        stream = EventStream(context, request, addressName(request.getClientAddress()))
        session = stream.session
        origin = _header(request, "origin")
        if not session.admit() or not session.checkOrigin(origin, _header(request, "host")):
            return stream.refusal
        token = bearerToken(request.getHeader("authorization")) or _argument(request, b"token", raw=True)
        if token is not None:
            if not session.authenticate(token):
                return stream.refusal
        elif session.access is Access.NONE:
            session.drop(Reason.AUTH_FAILED)
            return stream.refusal
        eventId = request.getHeader("last-event-id")
        if eventId:
            epoch, last = parseEventId(eventId)
        else:
            epoch, last = _argument(request, b"epoch"), _argument(request, b"last")
        try:
            where = startRequest(last, epoch)
        except BadPosition as e:
            session.drop(Reason.BAD_REQUEST, error=f"asked for {e}")
            return stream.refusal
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-cache")
        request.setHeader("X-Accel-Buffering", "no")
        if origin is not None and originAllowed(origin, None, context.config.httpOrigins):
            request.setHeader("Access-Control-Allow-Origin", origin)
            request.setHeader("Vary", "Origin")
        session.attach(Cursor(stream.transport, context.hub, self.framing, session))
        session.start(where)
        return NOT_DONE_YET


def _header(request: Request, name: str) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _argument(request: Request, name: bytes, raw: bool = False) -> Any:
    values = request.args.get(name)
    if not values:
        return None
    return values[0] if raw else values[0].decode("ascii", "replace")
