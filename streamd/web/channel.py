"""
The HTTP connections of a C{--http} listener, held to the daemon's rules
before (and between) requests that become a session: each counts in
C{--max-clients}, has C{--http-header-timeout} seconds to send each request
head, and is cut when it sends requests without reading the answers.  A
request body is refused (413) before any of it is read, except where a
body is published (C{POST /streams/NAME}): there it may have
L{streamd.web.publish.bodyLimit} bytes, which count in
C{--max-partial-bytes} until the request is answered, and must be whole
within 60 s (or C{--idle-timeout}, if shorter), as a message a WebSocket
client sends in pieces.  The site (one per listener) throttles its access
log.

A request that becomes a session (C{/ws}, C{/events}) counts as that
session instead (L{streamd.session.Session.admit} with its C{host}).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from streamd.protocol import addressName, noDelay
from streamd.reasons import Reason
from streamd.session import BYE_GRACE, MESSAGE_TIMEOUT
from streamd.throttle import LogThrottle
from streamd.web.context import HTTP_STATUS, WebContext
from streamd.web.publish import bodyLimit, takesBody

MAX_UNREAD_ANSWERS = 8
"""
Requests a connection may send while the daemon's buffer for it holds
answers it has not read (more than the transport's buffer size): past
that, it is cut.
"""

ACCESS_LINES = 20
"""
Requests logged one by one in a second at most; past that they are counted.
"""

log = Logger()


class StreamdChannel(HTTPChannel):
    """
    One HTTP connection of a L{StreamdSite} (see the module).

    @ivar answered: the requests answered on it so far.
    """

    site: StreamdSite
    # A connected TCP or TLS transport; Twisted types it loosely.
    transport: Any
    peer = ""
    answered = 0
    _refused = False
    _full = False
    _unread = 0
    _headBytes = 0
    _headCall: IDelayedCall | None = None
    _graceCall: IDelayedCall | None = None
    _upgraded: Any = None
    _requestLine: bytes | None = None
    _bodyLimit = 0
    _bodyHeld = 0
    _bodyCall: IDelayedCall | None = None

    @property
    def context(self) -> WebContext:
        return self.site.context

    def connectionMade(self) -> None:
        super().connectionMade()
        # Twisted turns Nagle's algorithm off here only from 24.10 on.
        noDelay(self.transport)
        self.peer = addressName(self.transport.getPeer())
        context = self.context
        connections = context.connections
        limit = connections.full(context.config.maxClients)
        if limit is not None:
            self._refuse(Reason.MAX_CLIENTS, clients=len(connections), limit=limit)
            return
        connections.addChannel(self)
        context.hub.stats.connections = len(connections)
        self._awaitHead()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        self._headBytes += len(data)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._requestLine is None and line:
            self._requestLine = line
        super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        upgraded = self._upgraded
        if upgraded is not None:
            # What came in the same read as the upgrading request is the new
            # protocol's (twisted.web would keep it for a next request).
            protocol = (
                upgraded.wrappedProtocol if isinstance(upgraded, ProtocolWrapper) else upgraded.protocol
            )
            protocol.dataReceived(data)
        elif not self._refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:
        """
        A request's head is in: no more timer; a body is refused before any
        of it is read (and before C{Expect: 100-continue} is answered),
        unless its endpoint takes one of its size; then it has its time.
        """
        self._cancel("_headCall")
        if self.length != 0:
            length = "chunked" if self.length is None else f"{self.length} bytes"
            method, _, rest = (self._requestLine or b"").partition(b" ")
            limit = bodyLimit(self.context.config)
            if not takesBody(method, rest.partition(b" ")[0]):
                self._refuse(Reason.REQUEST_BODY, length=f"{length}, which its endpoint does not take")
                return
            if self.length is not None and self.length > limit:
                self._refuse(Reason.REQUEST_BODY, length=f"{length}, over the {limit}-byte limit")
                return
            self._bodyLimit = limit
            self._bodyCall = self.context.clock.callLater(self._bodyTimeout(), self._bodyTimedOut)
        super().allHeadersReceived()

    def bodyReceived(self, size: int) -> bool:
        """
        C{size} more bytes of the request's body came: they count in
        C{--max-partial-bytes} until it is answered.

        @return: whether they are taken; if not, the request is refused.
        """
        held = self._bodyHeld + size
        if held > self._bodyLimit:
            self._refuse(Reason.REQUEST_BODY, length=f"chunked, over the {self._bodyLimit}-byte limit")
            return False
        budget = self.context.connections.partial
        if not budget.move(self._bodyHeld, held):
            self._bodyHeld = held
            self._refuse(Reason.MAX_PARTIAL, held=held, limit=budget.limit)
            return False
        self._bodyHeld = held
        return True

    def allContentReceived(self) -> None:
        """
        A whole request is in: answer it, unless the client has sent too
        many while not reading the answers, or its body was refused on the
        way.
        """
        if self._refused:
            return
        self._cancel("_bodyCall")
        self._requestLine = None
        if self._full:
            self._unread += 1
            if self._unread > MAX_UNREAD_ANSWERS:
                self._cut(Reason.PIPELINE, count=self._unread)
                return
        super().allContentReceived()
        self._releaseBody()

    def requestDone(self, request: Request) -> None:
        self.answered += 1
        if self.persistent and not self._refused:
            # The time for the next request's head starts now; a request
            # already buffered stops it at once.
            self._awaitHead()
        super().requestDone(request)

    def pauseProducing(self) -> None:
        self._full = True
        super().pauseProducing()

    def resumeProducing(self) -> None:
        self._full = False
        self._unread = 0
        super().resumeProducing()

    def upgraded(self) -> None:
        """
        The connection is no longer HTTP's (a WebSocket, an event stream
        written to the connection itself): count it as its session only.
        """
        self._cancel("_headCall")
        if self.transport is not None:
            self._upgraded = self.transport
        connections = self.context.connections
        connections.discardChannel(self)
        self.context.hub.stats.connections = len(connections)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._cancel("_headCall")
        self._cancel("_graceCall")
        self._cancel("_bodyCall")
        self._releaseBody()
        super().connectionLost(reason)
        # After the requests: a session ended by this loss hands its count
        # back first.
        self.upgraded()

    def _awaitHead(self) -> None:
        self._cancel("_headCall")
        self._headBytes = 0
        timeout = self.context.headerTimeout
        if timeout:
            self._headCall = self.context.clock.callLater(timeout, self._headTimedOut)

    def _headTimedOut(self) -> None:
        """
        No complete request head in time: an idle connection is closed
        quietly (as a keep-alive connection ends), one that began a request
        is answered 408, counted and logged.
        """
        self._headCall = None
        if self._headBytes == 0:
            self._refused = True
            self._close()
        else:
            self._refuse(Reason.HEADER_TIMEOUT, timeout=self.context.headerTimeout)

    def _bodyTimeout(self) -> float:
        idleTimeout = self.context.config.idleTimeout
        return MESSAGE_TIMEOUT if idleTimeout is None else min(MESSAGE_TIMEOUT, idleTimeout)

    def _bodyTimedOut(self) -> None:
        """
        A body not whole in time: answered 408 and closed.
        """
        self._bodyCall = None
        self._refuse(Reason.SLOW_MESSAGE, timeout=self._bodyTimeout())

    def _releaseBody(self) -> None:
        """
        The body held is let go: it counts in C{--max-partial-bytes} no more.
        """
        if self._bodyHeld:
            self.context.connections.partial.move(self._bodyHeld, 0)
            self._bodyHeld = 0

    def _refuse(self, reason: Reason, **figures: Any) -> None:
        """
        Answer with the HTTP status of C{reason} and close; count and log
        it once.
        """
        self._drop(reason, figures)
        code = HTTP_STATUS.get(reason, 503)
        body = reason.summary.encode() + b"\n"
        self.transport.write(  # refused: no cursor
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (code, RESPONSES.get(code, b""), len(body), body)
        )
        self._close()

    def _cut(self, reason: Reason, **figures: Any) -> None:
        """
        Close now, for a client that reads nothing: count and log it once.
        """
        self._drop(reason, figures)
        self.transport.abortConnection()

    def _drop(self, reason: Reason, figures: dict[str, Any]) -> None:
        self._refused = True
        self._cancel("_headCall")
        self._cancel("_bodyCall")
        self._releaseBody()
        context = self.context
        context.connections.dropped(context.hub.stats, self.peer, reason, **figures)

    def _close(self) -> None:
        """
        Close once what is written is sent, or after L{BYE_GRACE} seconds.
        """
        self._graceCall = self.context.clock.callLater(BYE_GRACE, self.transport.abortConnection)
        self.loseConnection()

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None and call.active():
            call.cancel()
        setattr(self, name, None)


class StreamdRequest(Request):
    """
    A request of a L{StreamdSite}: its body, where its endpoint takes one,
    is counted by its channel as it comes, and held in memory (its channel
    bounds it), never in a temporary file.
    """

    channel: StreamdChannel

    def gotLength(self, length: int | None) -> None:
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel.bodyReceived(len(data)):
            super().handleContentChunk(data)


class StreamdSite(Site):
    """
    The site of one C{--http} listener: its connections are
    L{StreamdChannel}s, without twisted.web's own idle timeout (each
    request head has L{WebContext.headerTimeout}, each session its own
    rules), and its access log is throttled.
    """

    protocol = StreamdChannel  # type: ignore[assignment]
    requestFactory = StreamdRequest

    def __init__(self, root: Resource, context: WebContext, **kwargs: Any) -> None:
        super().__init__(root, timeout=None, reactor=context.clock, **kwargs)
        self.context = context
        self._lines = LogThrottle(context.clock, self._unlogged, ACCESS_LINES)

    def log(self, request: Request) -> None:  # type: ignore[override]
        if self._lines.admitOne():
            super().log(request)

    def _unlogged(self, count: int, size: int) -> None:
        log.info("{count} more requests in a second, not logged one by one", count=count)

    def stopFactory(self) -> None:
        self._lines.stop()
        self.context.publishLines.stop()
        super().stopFactory()


__all__ = ["StreamdChannel", "StreamdSite"]
