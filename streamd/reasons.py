"""
Why the daemon closes or refuses a client's connection: one typed reason
each, mapped to text, counters and codes only at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class _Texts:
    """
    What a reason says: C{summary} to the client (a C{seq} BYE's text, a
    WebSocket close reason, an SSE C{bye}), C{log} in the daemon's log line,
    a template of the figures the drop carries, and whether a client should
    C{reconnect} after it.
    """

    summary: str
    log: str
    reconnect: bool


class Reason(Enum):
    """
    A reason for the daemon to close or refuse a connection.

    Each member's value is its code on the wire (the C{seq} protocol's
    C{BYE}, a WebSocket close code minus 4000) and its L{label} names it in
    counters, metrics and C{bye} messages.
    """

    EVICTED = 1
    MAX_PENDING = 2
    SOFT_PENDING = 3
    OVERSIZED_FRAME = 4
    BAD_FRAME = 5
    AUTH_FAILED = 6
    AUTH_TIMEOUT = 7
    READ_ONLY = 8
    IDLE = 9
    MAX_CLIENTS = 10
    SHUTDOWN = 11
    MAX_PARTIAL = 12
    NO_PONG = 13
    BAD_REQUEST = 14
    AHEAD = 15
    ORIGIN = 16
    HEADER_TIMEOUT = 17
    REQUEST_BODY = 18
    PIPELINE = 19
    SLOW_MESSAGE = 20
    PING_FLOOD = 21
    FORBIDDEN = 22
    DISK_FULL = 23

    @property
    def label(self) -> str:
        """
        The reason's name in counters and metrics: C{max_pending}.
        """
        return self.name.lower()

    @property
    def summary(self) -> str:
        """
        What the client is told, for people: C{"wrong token"}.
        """
        return _TEXTS[self].summary

    @property
    def reconnect(self) -> bool:
        """
        Whether a client should connect again after this reason (with
        backoff): not when it would only be refused again.
        """
        return _TEXTS[self].reconnect

    @property
    def slowConsumer(self) -> bool:
        """
        Whether the reason is the client's being too slow.
        """
        return self in _SLOW

    @property
    def template(self) -> str:
        """
        The log's text for this reason as a C{twisted.logger} format string.
        """
        return _TEXTS[self].log


_TEXTS = {
    Reason.EVICTED: _Texts(
        "fell out of the history",
        "is too slow: {behind} bytes behind, its position left the --history of {history} bytes; disconnecting",
        True,
    ),
    Reason.MAX_PENDING: _Texts(
        "too far behind (--max-pending)",
        "is too slow: {behind} bytes behind, over --max-pending {limit}; disconnecting",
        True,
    ),
    Reason.SOFT_PENDING: _Texts(
        "too far behind for too long (--soft-pending)",
        "is too slow: {behind} bytes behind, over --soft-pending {limit} for --soft-seconds {seconds:g}; disconnecting",
        True,
    ),
    Reason.OVERSIZED_FRAME: _Texts(
        "sent a frame over the size limit",
        "announced a {length}-byte frame, over the {limit}-byte limit; disconnecting",
        False,
    ),
    Reason.BAD_FRAME: _Texts("sent a malformed frame", "{error}; disconnecting", False),
    Reason.AUTH_FAILED: _Texts("wrong token", "sent a wrong token; disconnecting", False),
    Reason.AUTH_TIMEOUT: _Texts(
        "no token in time (--auth-timeout)",
        "sent no token within --auth-timeout {timeout:g} s; disconnecting",
        False,
    ),
    Reason.READ_ONLY: _Texts(
        "this client may not publish",
        "is read-only but sent {count} message(s); rejected, disconnecting",
        False,
    ),
    Reason.IDLE: _Texts(
        "idle (--idle-timeout)", "sent and took nothing for --idle-timeout {timeout:g} s; disconnecting", True
    ),
    Reason.MAX_CLIENTS: _Texts(
        "too many clients (--max-clients)",
        "refused: {clients} clients connected, the limit of {limit} (--max-clients, or what the open-file"
        " limit leaves)",
        True,
    ),
    Reason.SHUTDOWN: _Texts("the daemon is shutting down", "the daemon is shutting down", True),
    Reason.MAX_PARTIAL: _Texts(
        "too much of a partial frame held",
        "holds {held} bytes of an unfinished frame, which would take all clients' unfinished frames"
        " over --max-partial-bytes {limit}; disconnecting",
        True,
    ),
    Reason.NO_PONG: _Texts(
        "did not answer two PINGs (--heartbeat)",
        "answered none of two PINGs (--heartbeat {interval:g} s); disconnecting",
        True,
    ),
    Reason.BAD_REQUEST: _Texts(
        "sent a frame the protocol does not allow here", "{error}; disconnecting", False
    ),
    Reason.AHEAD: _Texts(
        "asked to resume after a message not published yet",
        "asked to resume after message {position}, beyond the newest, {newest}; disconnecting",
        True,
    ),
    Reason.ORIGIN: _Texts(
        "a page of this origin may not connect (--http-origin)",
        "is a page of {origin}, which --http-origin does not allow; refused",
        False,
    ),
    Reason.HEADER_TIMEOUT: _Texts(
        "no complete request in time (--http-header-timeout)",
        "sent no complete request head within --http-header-timeout {timeout:g} s; disconnecting",
        True,
    ),
    Reason.REQUEST_BODY: _Texts(
        "a request body this endpoint does not take, or too large",
        "sent a request body ({length}); refused with 413",
        False,
    ),
    Reason.PIPELINE: _Texts(
        "sent requests without reading the answers",
        "sent {count} more requests without reading the answers already sent; disconnecting",
        True,
    ),
    Reason.PING_FLOOD: _Texts(
        "sent pings without reading the answers",
        "sent {count} pings without reading the answers; disconnecting",
        True,
    ),
    Reason.FORBIDDEN: _Texts(
        "this client may not read this stream", "may not read the stream {stream}; refused", False
    ),
    Reason.DISK_FULL: _Texts(
        "no room on the daemon's disk for what was published; try again later",
        "published to {stream}, whose log on disk has no room; disconnecting",
        True,
    ),
    Reason.SLOW_MESSAGE: _Texts(
        "took too long to send one message",
        "left a message unfinished for {timeout:g} s; disconnecting",
        True,
    ),
}

_SLOW = frozenset({Reason.EVICTED, Reason.MAX_PENDING, Reason.SOFT_PENDING})
