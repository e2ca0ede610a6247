"""
Why the daemon closes a client's connection: one typed reason each, mapped to
text, counters and codes only at the edges.
"""

from __future__ import annotations

from enum import Enum


class Reason(Enum):
    """
    A reason for the daemon to close a connection.

    Each member's value is its code on the wire (the C{seq} protocol's
    C{BYE}) and its label in counters; C{describe} gives the log text.
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

    @property
    def label(self) -> str:
        """
        The reason's name in counters and metrics: C{max_pending}.
        """
        return self.name.lower()

    @property
    def slowConsumer(self) -> bool:
        """
        Whether the reason is the client's being too slow.
        """
        return self in _SLOW


_SLOW = frozenset({Reason.EVICTED, Reason.MAX_PENDING, Reason.SOFT_PENDING})
