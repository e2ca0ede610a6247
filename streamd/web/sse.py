"""
Server-Sent Events subscribers at C{/events}, for a browser's
C{EventSource} and for C{curl -N}.

Each stream message is one event whose C{id:} is C{EPOCH-SEQ}; a text
message is its C{data:} lines (split at line feeds), a message that is not
UTF-8 text, or holds a carriage return, is a C{binary} event whose data is
its base64.  The daemon's own events are named: C{hello} (JSON: C{epoch},
C{next}, the first sequence number to come), C{gap} (JSON: C{first},
C{last}, messages missed that left the history) and C{bye} (JSON:
C{reason}, C{code}) before it closes the stream.  A comment,
C{: keepalive}, comes every L{KEEPALIVE} seconds.  A reconnecting
C{EventSource} sends C{Last-Event-ID}, and the stream resumes after it; a
client without one may say C{?last=SEQ&epoch=EPOCH}.

Every subscriber is a L{Cursor} writing through its request, so the events
of a history entry are made once for all of them, and flow control and the
limits are those of every other subscriber.
"""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Sequence
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from streamd.auth import Access
from streamd.cursor import Cursor
from streamd.framing import Framing, Payload
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.web.context import WebContext, bearerToken
from streamd.web.resume import catchUp, parseEventId, parsePosition, subscribe

KEEPALIVE = 15.0
"""
Seconds between two C{: keepalive} comments.
"""

RETRY_MS = 1000
"""
How long a disconnected C{EventSource} waits before reconnecting.
"""


def event(payload: Payload, eventId: str) -> bytes:
    """
    One stream message as an event.
    """
    data = bytes(payload)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\r" in text:
        return b"id: %s\nevent: binary\ndata: %s\n\n" % (eventId.encode(), b64encode(data))
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"id: {eventId}\n{lines}\n".encode()


def namedEvent(name: str, message: dict[str, Any]) -> bytes:
    """
    One of the daemon's own events, its data a JSON object.
    """
    return f"event: {name}\ndata: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


class EventFraming(Framing):
    """
    Stream messages as events with ids of one epoch, for a L{Cursor}: the
    history makes an entry's events once for every SSE subscriber.
    """

    name = "sse"
    headerSize = 0
    maxLength = 2**63 - 1

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch

    def encodeEntry(self, payloads: Sequence[Payload], first: int) -> bytes:
        epoch = self.epoch
        return b"".join([event(p, f"{epoch}-{first + i}") for i, p in enumerate(payloads)])


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


class EventStream:
    """
    One SSE client.
    """

    log = Logger()
    kind = "sse"
    messagesIn = 0
    bytesIn = 0
    since = 0.0

    def __init__(self, resource: EventsResource, request: Request, peer: str) -> None:
        self.resource = resource
        self.context = resource.context
        self.peer = peer
        self._transport = _RequestTransport(request)
        self.cursor = Cursor(self._transport, self.context.hub, resource.framing, self)
        self._open = True
        request.notifyFinish().addBoth(self._finished)

    @property
    def messagesOut(self) -> int:
        return self.cursor.messages

    @property
    def bytesOut(self) -> int:
        return self.cursor.written

    def start(self, after: int | None) -> None:
        """
        Subscribe, greet, and send what the client is behind by.
        """
        context = self.context
        context.connected(self)
        start = subscribe(self.cursor, after)
        greeting = b"retry: %d\n\n" % RETRY_MS
        if start.gap is not None:
            greeting += namedEvent("gap", {"first": start.gap[0], "last": start.gap[1]})
        greeting += namedEvent("hello", {"epoch": context.epoch, "next": start.next})
        catchUp(self.cursor, start, greeting)

    def keepalive(self) -> None:
        """
        Send the keepalive comment, after what the client is behind by.
        """
        self.cursor.sendPrivate(b": keepalive\n\n")

    def slowConsumer(self, reason: Reason, behind: int) -> None:
        """
        The hub cuts this client, by the same rules as a TCP one.
        """
        self.context.tooSlow(self.peer, reason, behind)
        self.abort()

    def close(self) -> None:
        """
        Send what the client is behind by, then end the response.
        """
        self.cursor.close()

    def abort(self) -> None:
        """
        Close the connection now.
        """
        self.cursor.abandon()
        self._transport.abortConnection()

    def _finished(self, result: object) -> None:
        self.cursor.abandon()
        if self._open:
            self._open = False
            self.resource.streamEnded(self)
            self.context.disconnected(self)


class EventsResource(Resource):
    """
    C{/events}: a stream of events per request.
    """

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        self.framing = EventFraming(context.epoch)
        self.streams: set[EventStream] = set()
        self._keepalive = LoopingCall(self._sendKeepalives)
        self._keepalive.clock = context.clock

    def render_GET(self, request: Request) -> Any:
        context = self.context
        peer = addressName(request.getClientAddress())
        if context.full(peer):
            request.setResponseCode(503)
            return b"too many clients\n"
        token = bearerToken(request.getHeader("authorization"))
        if token is None:
            query = request.args.get(b"token")
            token = query[0] if query else None
        if context.accessFor(token) is Access.NONE:
            context.hub.stats.authFailures += 1
            request.setResponseCode(401)
            request.setHeader("WWW-Authenticate", "Bearer")
            return b"a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n"
        epoch, last = parseEventId(request.getHeader("last-event-id"))
        if last is None:
            epoch, last = _argument(request, b"epoch"), _argument(request, b"last")
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-cache")
        request.setHeader("X-Accel-Buffering", "no")
        stream = EventStream(self, request, peer)
        self.streams.add(stream)
        if not self._keepalive.running:
            self._keepalive.start(KEEPALIVE, now=False)
        stream.start(parsePosition(last, epoch, context.epoch))
        return NOT_DONE_YET

    def _sendKeepalives(self) -> None:
        for stream in list(self.streams):
            stream.keepalive()

    def streamEnded(self, stream: EventStream) -> None:
        """
        C{stream}'s request is over.
        """
        self.streams.discard(stream)
        if not self.streams and self._keepalive.running:
            self._keepalive.stop()


def _argument(request: Request, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("ascii", "replace") if values else None
