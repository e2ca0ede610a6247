"""
Starting an HTTP subscriber after a sequence number it was already sent.

A WebSocket or Server-Sent Events client says where it is as the epoch and
the sequence number of the last message it got (C{?last=SEQ&epoch=E}, or
C{Last-Event-ID: E-SEQ}).  Its cursor then starts in the history right
after that message; what has left the history is reported as a gap, and a
different epoch (the daemon restarted) starts it at the head.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamd.cursor import Cursor
from streamd.history import FIRST, SENDER


@dataclass(frozen=True)
class Start:
    """
    Where a subscriber starts.

    @ivar next: the sequence number of the first message it will be sent.
    @ivar gap: the first and last sequence numbers of the messages it missed
        that the history no longer holds, if any.
    @ivar prefix: the rest of the entry it stopped in the middle of, framed
        for it, to send before the log (C{prefixCount} messages).
    """

    next: int
    gap: tuple[int, int] | None = None
    prefix: bytes = b""
    prefixCount: int = 0


def parsePosition(last: str | None, epoch: str | None, current: str) -> int | None:
    """
    The sequence number a client last got, from what it sent, if it names
    this epoch and a number; C{None} (start at the head) otherwise.
    """
    if last is None or epoch != current:
        return None
    try:
        sequence = int(last)
    except ValueError:
        return None
    return sequence if sequence >= 0 else None


def parseEventId(eventId: str | None) -> tuple[str | None, str | None]:
    """
    The epoch and the sequence number of a Server-Sent Events id,
    C{EPOCH-SEQ}.
    """
    if not eventId:
        return None, None
    epoch, _, last = eventId.strip().rpartition("-")
    return (epoch or None), last


def subscribe(cursor: Cursor, after: int | None) -> Start:
    """
    Subscribe C{cursor} to its hub: at the head, or right after message
    C{after} when that is given.

    Messages of the first entry up to C{after} are skipped, so a client
    counting sequence numbers gets each message once; L{catchUp} then sends
    the rest of the log as to a cursor that fell behind, under the same
    rules.
    """
    hub = cursor.hub
    history = hub.history
    hub.subscribe(cursor)
    head = history.nextSequence
    if after is None or after + 1 >= head:
        return Start(head)
    oldest = history[history.start][FIRST] if len(history) else head
    gap = None
    if after + 1 < oldest:
        gap = (after + 1, oldest - 1)
        index = history.start
        first = oldest
    else:
        index = history.find(after + 1)
        entry = history[index]
        first = after + 1
        if entry[FIRST] < first:
            index += 1
            if entry[SENDER] != cursor.serial:
                rest = history.payloads(entry)[first - entry[FIRST] :]
                cursor.seek(index)
                return Start(first, None, cursor.framing.encodeEntry(rest, first), len(rest))
    cursor.seek(index)
    return Start(first, gap)


def catchUp(cursor: Cursor, start: Start, greeting: bytes) -> None:
    """
    Send a cursor that L{subscribe} started C{greeting}, then, as far as its
    connection takes, what it is behind by: the rest of a partly sent entry,
    then the log.
    """
    if start.prefix:
        stats = cursor.hub.stats
        cursor.messages += start.prefixCount
        stats.messagesOut += start.prefixCount
        stats.bytesOut += len(start.prefix)
    if cursor.live:
        cursor.sendPrivate(greeting)
    else:
        cursor.sendPrivate(greeting + start.prefix, before=cursor.index)
        cursor.resumeProducing()
