"""
What the HTTP side of one C{--http} listener shares, and what its two
transports (WebSocket, SSE) read from a request the same way: the token,
the page's origin, where the stream should start, and how a refusal before
the stream is answered (L{Refusal}).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from streamd.config import DEFAULT_HEADER_TIMEOUT
from streamd.fanout.hub import Hub
from streamd.fanout.resume import Start, StartRequest
from streamd.fanout.streams import Streams
from streamd.reasons import Reason
from streamd.session import Connections, SessionContext
from streamd.throttle import LogThrottle
from streamd.web.deflate import Deflater
from streamd.web.parse import BadInput, decimal, shown

HTTP_STATUS = {
    Reason.AUTH_FAILED: 401,
    Reason.ORIGIN: 403,
    Reason.FORBIDDEN: 403,
    Reason.BAD_REQUEST: 400,
    Reason.OVERSIZED_FRAME: 413,
    Reason.MAX_CLIENTS: 503,
    Reason.HEADER_TIMEOUT: 408,
    Reason.REQUEST_BODY: 413,
    Reason.SLOW_MESSAGE: 408,
}
"""
The HTTP status of a refusal before the stream starts, by reason; any other
reason is a 503.
"""


class Refusal(NamedTuple):
    """
    The HTTP answer to a request refused before its stream starts (or
    before it publishes): the C{reason} it is counted and logged under,
    with the C{figures} its log line names, and the C{status} and C{text}
    the client is answered with.
    """

    reason: Reason
    status: int
    text: str
    figures: dict[str, Any]

    @classmethod
    def of(cls, reason: Reason, **figures: Any) -> Refusal:
        """
        The answer for C{reason} as every refusal says it: its status, its
        summary.
        """
        return cls(reason, HTTP_STATUS.get(reason, 503), reason.summary, figures)


class WebContext(SessionContext):
    """
    The daemon as the HTTP side sees it.

    @ivar publicMetrics: whether C{/metrics} and C{/connz} answer without the
        token (C{--http-public-metrics}).
    @ivar headerTimeout: seconds a connection has to send a request's head
        (C{--http-header-timeout}), or C{None} for no limit.
    @ivar publishLines: the log lines of what requests publish.
    @ivar deflater: what compresses the stream for the WebSocket clients
        that negotiate permessage-deflate (C{--http-compress}), the same
        for every listener; C{None} when off.
    """

    log = Logger()

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        config: Any,
        connections: Connections,
        listener: str = "http",
        publicMetrics: bool = False,
        headerTimeout: float | None = DEFAULT_HEADER_TIMEOUT,
        streams: Streams | None = None,
        deflater: Deflater | None = None,
    ) -> None:
        super().__init__(hub, clock, config, connections, listener, streams)
        self.publicMetrics = publicMetrics
        self.headerTimeout = headerTimeout
        self.deflater = deflater
        self.publishLines = LogThrottle(clock, self._unlogged)

    def _unlogged(self, messages: int, size: int) -> None:
        self.log.info(
            "{messages} more messages ({size} bytes) published over HTTP in a second, not logged one by one",
            messages=messages,
            size=size,
        )

    @property
    def epoch(self) -> str:
        """
        The history's epoch, as seq clients get it, in hex for URLs and ids.
        """
        return self.hub.history.epoch.hex()


def bearerToken(header: bytes | str | None) -> bytes | None:
    """
    The token of an C{Authorization: Bearer TOKEN} header, if that is what
    C{header} is.
    """
    if header is None:
        return None
    if isinstance(header, str):
        header = header.encode("latin-1")
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


class BadPosition(BadInput):
    """
    A request's resume parameters do not parse: its str says why.
    """


_HEX_EPOCH = re.compile(r"[0-9a-fA-F]{16}")


def startRequest(last: str | None, epoch: str | None) -> StartRequest:
    """
    Where a client that said C{?last=SEQ&epoch=EPOCH} (or
    C{Last-Event-ID: EPOCH-SEQ}) asks to start: after message C{last} of
    C{epoch}, or at the head when it says neither.

    @raise BadPosition: for one without the other, a number that is not
        one of at most 20 ASCII digits, or an epoch that is not 16 hex
        digits.
    """
    if last is None and epoch is None:
        return StartRequest()
    if last is None or epoch is None:
        raise BadPosition("a resume without both last=SEQ and epoch=EPOCH")
    try:
        position = decimal(last, "last")
    except BadInput as e:
        raise BadPosition(str(e)) from None
    if not _HEX_EPOCH.fullmatch(epoch):
        raise BadPosition(f"epoch={shown(epoch)}, which is not 16 hex digits")
    return StartRequest(Start.RESUME, bytes.fromhex(epoch), position)


def parseEventId(eventId: str) -> tuple[str | None, str | None]:
    """
    The epoch and the sequence number of a Server-Sent Events id,
    C{EPOCH-SEQ}.
    """
    epoch, _, last = eventId.strip().rpartition("-")
    return (epoch or None), (last or None)
