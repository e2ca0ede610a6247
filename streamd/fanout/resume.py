"""
Where a subscriber's stream starts: at the head, the last N messages, or
right after a message it already has, and what it missed on the way.

Every transport that numbers its messages (C{seq}, WebSocket, SSE) asks
L{startPosition} the same question, so the answers cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from streamd.fanout.history import FIRST, History


class Start(IntEnum):
    """
    Where a client asks its stream to start.
    """

    NEWEST = 0
    RESUME = 1
    LAST = 2
    NONE = 3
    """
    No stream yet: a client of several streams (C{seq} version 4) starts
    each as it subscribes to it.
    """
    SINCE = 4
    """
    The messages that came in at or after a time (milliseconds since 1970,
    in the request's position), then the live stream (C{seq} version 5).
    """


class GapReason(IntEnum):
    """
    Why a client will not get the messages a L{Gap} covers.
    """

    EVICTED = 1
    RESTARTED = 2
    CLUSTER = 3

    @property
    def label(self) -> str:
        """
        The reason's name in the web's C{gap} messages: C{evicted}.
        """
        return self.name.lower()


@dataclass(frozen=True)
class Gap:
    """
    Messages C{first} to C{last} will not be sent, for C{reason} (a
    L{GapReason}, or a number a later version defines); C{last} is
    C{first - 1} when no message of this log is missed, as after a restart
    before anything was published, or a cluster loss of unknown size.
    """

    first: int
    last: int
    reason: int


@dataclass(frozen=True)
class StartRequest:
    """
    What a client asks for: L{Start.RESUME} after message C{position} of
    C{epoch}, L{Start.LAST} the last C{position} messages, L{Start.SINCE}
    those that came in from millisecond C{position} (since 1970) on, or
    L{Start.NEWEST}.
    """

    start: Start = Start.NEWEST
    epoch: bytes = b""
    position: int = 0


HEAD = StartRequest()
"""
The request of a client that speaks no numbers (C{int32}, C{ascii10}).
"""


class StartPoint(NamedTuple):
    """
    Where a stream starts: the messages of entry number C{entry} from its
    C{skip}th on, after C{gap} if some that were asked for are gone;
    C{next} is the sequence number of the first message to come.  (A tuple:
    every connection makes one.)
    """

    entry: int
    skip: int
    next: int
    gap: Gap | None = None


class PositionAhead(Exception):
    """
    A client asked to resume after a message this log has not numbered
    yet: its C{position} is beyond the C{newest}.
    """

    def __init__(self, position: int, newest: int) -> None:
        super().__init__(f"resume after {position}, beyond the newest, {newest}")
        self.position = position
        self.newest = newest


def startPosition(history: History, request: StartRequest) -> StartPoint:
    """
    Where the stream of a client that asked C{request} starts in
    C{history}.

    A resume from another epoch (the daemon restarted) starts at this
    epoch's oldest message held, after a L{GapReason.RESTARTED} gap (which
    is empty when this epoch lost nothing).  What was asked for and has
    left the history is a L{GapReason.EVICTED} gap, a hole in a cluster's
    stream a L{GapReason.CLUSTER} one.

    @raise PositionAhead: for a resume in this epoch beyond its newest
        message, or any resume while the log awaits a cluster's epoch.
    """
    newest = history.nextSequence - 1
    oldestEntry = history.oldestEntry()
    oldest = newest + 1 if oldestEntry is None else oldestEntry[FIRST]
    missed = GapReason.EVICTED
    if request.start == Start.RESUME and history.awaitingEpoch:
        # A cluster's node that has not joined yet: the client's position
        # is in the cluster's numbering, which this node has not reached.
        raise PositionAhead(request.position, newest)
    if request.start == Start.RESUME and not history.ownsEpoch(request.epoch):
        after = 0
        missed = GapReason.RESTARTED
    elif request.start == Start.RESUME:
        after = request.position
        if after > newest:
            raise PositionAhead(after, newest)
    elif request.start == Start.LAST:
        after = max(newest - request.position, 0)
    elif request.start == Start.SINCE:
        # What came in before the oldest held is gone, whenever it came:
        # a start at a time has no gap, it starts at the oldest held.
        index = history.entryAt(request.position)
        after = history[index][FIRST] - 1 if index < history.end else newest
    else:
        after = newest
    gap = None
    if after + 1 < oldest or missed is GapReason.RESTARTED:
        gap = Gap(after + 1, oldest - 1, missed)
        after = max(after, oldest - 1)
    index = history.find(after + 1)
    skip = 0
    if index < history.end:
        first = history[index][FIRST]
        if first > after + 1 and gap is None:
            # A hole of a cluster's stream: messages this node never got.
            gap = Gap(after + 1, first - 1, GapReason.CLUSTER)
            after = first - 1
        skip = max(after + 1 - first, 0)
    return StartPoint(index, skip, after + 1, gap)
