"""
Counting the messages of a received byte stream by walking their heads.

Subscribers read large chunks and never slice payloads out. A L{Walker}
parses one record head and skips the body. When a chunk holds a run of
records of the same length (the usual case in a benchmark) it checks them
all at C speed instead of with a Python loop per record: with one comparison
if the records are identical (a burst publisher repeats one message), else
with one strided comparison per head byte.
"""

from __future__ import annotations

from struct import Struct
from typing import Protocol

from streamd.seqframing import BATCH_LIMIT, BATCH_OVERHEAD, MSG_OVERHEAD, FrameType

STAMP = Struct(">Q")
"""
The publish time (C{time.monotonic_ns()}) in the first 8 bytes of a payload.
"""

_INT32 = Struct(">I")
_SEQ = Struct(">Q")

Chunk = bytes | bytearray
"""
Received bytes: a chunk of its own, or a reused read buffer.
"""

CONTROL = -1
"""
The body length L{RecordFormat.parse} gives a control record (a NATS
C{PING}): its head is all of it, and it is not a message.
"""


class RecordFormat(Protocol):
    """
    How records are laid out on a subscriber's connection.

    @ivar maxHead: bytes from which L{parse} never answers C{None}.
    """

    maxHead: int

    def parse(self, data: Chunk, pos: int, end: int) -> tuple[int, int] | None:
        """
        The head and body lengths of the record at C{data[pos:end]}, or
        C{None} if those bytes end before the head does; the body length
        is L{CONTROL} for a record that is not a message.

        @raise ValueError: if the bytes cannot start a record.
        """

    def sameRun(self, data: Chunk, pos: int, head: int, length: int, count: int) -> bool:
        """
        Whether the C{count} records of C{length} bytes from C{pos}, the
        first of which has a C{head}-byte head, are all messages like the
        first, so that a L{Walker} may count them without parsing each one.
        """


class Int32Records:
    """
    streamd's frames: a 4-byte unsigned big-endian length, then the payload.
    """

    maxHead = 4

    def __init__(self, maxLength: int) -> None:
        self.maxLength = maxLength

    def parse(self, data: Chunk, pos: int, end: int) -> tuple[int, int] | None:
        if end - pos < 4:
            return None
        length: int = _INT32.unpack_from(data, pos)[0]
        if length > self.maxLength:
            raise ValueError(f"a {length}-byte frame, over the {self.maxLength}-byte limit")
        return 4, length

    def sameRun(self, data: Chunk, pos: int, head: int, length: int, count: int) -> bool:
        return sameHeads(data, pos, head, length, count)


class SeqRecords:
    """
    The frames of a C{seq} listener to a version 1 subscriber (no BATCH;
    version 2's are walked by L{SeqWalker}): int32 frames whose payload
    starts with a type byte.  A MSG frame is a message (its head: length, type and
    sequence number); a HELLO, GAP, PING or a frame of an unknown type is a
    control record; a BYE is an error.
    """

    maxHead = 64
    _fixed = 5

    def __init__(self, maxLength: int) -> None:
        self.maxLength = maxLength + MSG_OVERHEAD

    def parse(self, data: Chunk, pos: int, end: int) -> tuple[int, int] | None:
        if end - pos < self._fixed:
            return None
        length: int = _INT32.unpack_from(data, pos)[0]
        if not length or length > self.maxLength:
            raise ValueError(f"a {length}-byte seq frame, over the {self.maxLength}-byte limit or empty")
        kind = data[pos + 4]
        if kind == FrameType.MSG:
            if length < MSG_OVERHEAD:
                raise ValueError(f"a {length}-byte MSG frame is too short")
            return 4 + MSG_OVERHEAD, length - MSG_OVERHEAD
        if kind == FrameType.BYE:
            raise ValueError(f"the server said BYE: {bytes(data[pos + 5 : min(end, pos + 4 + length)])!r}")
        if 4 + length > self.maxHead:
            raise ValueError(f"a {length}-byte control frame of type {kind}, longer than expected")
        return (4 + length, CONTROL) if end - pos >= 4 + length else None

    def sameRun(self, data: Chunk, pos: int, head: int, length: int, count: int) -> bool:
        """
        Whether the run's frames have the same length and type as the first
        and their sequence numbers follow on from its own.
        """
        if not sameHeads(data, pos, self._fixed, length, count):
            return False
        first: int = _SEQ.unpack_from(data, pos + self._fixed)[0]
        last: int = _SEQ.unpack_from(data, pos + (count - 1) * length + self._fixed)[0]
        return last - first == count - 1


class _PrefixedMessages:
    """
    Pushes that all start with the same bytes, then the payload's length in
    decimal and CRLF, then the payload and CRLF.
    """

    def __init__(self, fixed: bytes, what: str) -> None:
        self._fixed = fixed
        self._what = what
        self.maxHead = len(fixed) + 12

    def parse(self, data: Chunk, pos: int, end: int) -> tuple[int, int] | None:
        fixed = self._fixed
        size = len(fixed)
        if end - pos < size:
            if not fixed.startswith(data[pos:end]):
                raise ValueError(f"not {self._what}: {data[pos:end]!r}")
            return None
        if not data.startswith(fixed, pos):
            raise ValueError(f"not {self._what}: {data[pos : pos + size]!r}")
        digits = pos + size
        crlf = data.find(b"\r\n", digits, min(end, pos + self.maxHead))
        if crlf < 0:
            if end - pos >= self.maxHead:
                raise ValueError(f"bad length {data[digits : pos + self.maxHead]!r}")
            return None
        return crlf + 2 - pos, int(data[digits:crlf]) + 2

    def sameRun(self, data: Chunk, pos: int, head: int, length: int, count: int) -> bool:
        return sameHeads(data, pos, head, length, count)


class RespMessages(_PrefixedMessages):
    """
    The pushes of a RESP2 subscription to one channel:
    C{*3 $7 message $<n> <channel> $<length> <payload> CRLF}.
    """

    def __init__(self, channel: bytes) -> None:
        super().__init__(
            b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$" % (len(channel), channel), f"a message on {channel!r}"
        )
        self.channel = channel


class NatsMessages(_PrefixedMessages):
    """
    What a NATS subscription without headers receives:
    C{MSG <subject> <sid> <length> CRLF <payload> CRLF}, and the server's
    C{PING}s (the first comes two seconds after C{CONNECT}), which are
    control records for the subscriber to answer.  Anything else (an
    C{-ERR}) is an error.
    """

    _ping = b"PING\r\n"

    def __init__(self, subject: bytes, sid: bytes) -> None:
        super().__init__(b"MSG %s %s " % (subject, sid), f"a MSG on {subject!r}")
        self.subject = subject

    def parse(self, data: Chunk, pos: int, end: int) -> tuple[int, int] | None:
        if data[pos : pos + 1] == b"P":
            ping = self._ping
            if not data.startswith(ping, pos):
                if end - pos < len(ping) and ping.startswith(data[pos:end]):
                    return None
                raise ValueError(f"not a MSG or a PING: {data[pos : pos + len(ping)]!r}")
            return len(ping), CONTROL
        return super().parse(data, pos, end)


def sameHeads(data: Chunk, pos: int, head: int, length: int, count: int) -> bool:
    """
    Whether the C{count} records of C{length} bytes from C{pos} all start
    with the same C{head} bytes.
    """
    stop = pos + count * length
    for i in range(head):
        if data[pos + i : stop : length] != data[pos + i : pos + i + 1] * count:
            return False
    return True


class Walker:
    """
    Counts the records of one connection, chunk by chunk, however the stream
    is split.

    @ivar records: records completed so far.
    @ivar controls: the control records completed since the caller last
        cleared this list, whole (they are not among L{records}).
    @ivar stamps: when C{stamped}, the L{STAMP} of each record completed
        since the caller last cleared this list.
    """

    def __init__(self, layout: RecordFormat, stamped: bool = False) -> None:
        self.layout = layout
        self.stamped = stamped
        self.records = 0
        self.controls: list[bytes] = []
        self.stamps: list[int] = []
        self._need = layout.maxHead + (STAMP.size if stamped else 0)
        self._carry = b""
        self._skip = 0
        self._skippedStamp: int | None = None

    def feed(self, data: Chunk, end: int | None = None, start: int = 0) -> int:
        """
        Take the next chunk received: C{data}, or its first C{end} bytes (a
        reused read buffer), from byte C{start} on.  Nothing outside them is
        read, and nothing of C{data} is kept.

        @return: how many records it completed.
        """
        before = self.records
        if end is None:
            end = len(data)
        pos = start
        if self._skip:
            step = min(self._skip, end - start)
            pos += step
            self._skip -= step
            if self._skip:
                return 0
            self._complete(self._skippedStamp)
        if self._carry:
            carry = self._carry
            joined = carry + data[pos : min(pos + self._need, end)]
            found = self._head(joined, 0, len(joined))
            if found is None:
                self._carry = joined
                return self.records - before
            self._carry = b""
            pos += found[1] - len(carry)
            if pos > end:
                self._skip, self._skippedStamp = pos - end, found[2]
                return self.records - before
            self._complete(found[2], joined[: found[1]])
        self._walk(data, pos, end)
        return self.records - before

    @property
    def partial(self) -> bool:
        """
        Whether the bytes fed so far end inside a record.
        """
        return bool(self._carry or self._skip)

    def _walk(self, data: Chunk, pos: int, end: int) -> None:
        fast = not self.stamped
        while pos < end:
            found = self._head(data, pos, end)
            if found is None:
                self._carry = bytes(data[pos:end])
                return
            head, length, stamp = found
            stop = pos + length
            if stop > end:
                self._skip, self._skippedStamp = stop - end, stamp
                return
            run = (end - pos) // length
            if fast and run > 1 and stamp != CONTROL:
                if data.startswith(data[pos:stop] * run, pos) or self.layout.sameRun(data, pos, head, length, run):
                    self.records += run
                    pos += run * length
                    continue
                fast = False
            self._complete(stamp, data[pos:stop] if stamp == CONTROL else b"")
            pos = stop

    def _head(self, data: Chunk, pos: int, end: int) -> tuple[int, int, int | None] | None:
        """
        The head length, record length and stamp of the record at C{pos},
        or C{None} if C{data} ends too soon to tell.
        """
        parsed = self.layout.parse(data, pos, end)
        if parsed is None:
            return None
        head, body = parsed
        if body == CONTROL:
            return head, head, CONTROL
        stamp = None
        if self.stamped and body >= STAMP.size:
            if pos + head + STAMP.size > end:
                return None
            stamp = STAMP.unpack_from(data, pos + head)[0]
        return head, head + body, stamp

    def _complete(self, stamp: int | None, record: Chunk = b"") -> None:
        if stamp == CONTROL:
            self.controls.append(bytes(record))
            return
        self.records += 1
        if stamp is not None:
            self.stamps.append(stamp)


_FRAME_HEAD = Struct(">IB")
_GAP_LAST = Struct(">Q")
_CONTROL_LIMIT = 4096
"""
The longest control frame (HELLO, GAP, PING, a type of a later version)
a L{SeqWalker} takes.
"""


class SeqWalker:
    """
    Counts the messages of a C{seq} listener's version 2 stream, as a
    L{Walker} counts records: every message of a MSG frame or of a BATCH
    (whose int32 frames an inner L{Walker} walks where they lie, at C speed
    for runs of like messages), checking that each frame's first sequence
    number follows on from the last one's; a GAP (which moves the next
    number on), a HELLO, a PING or a frame of an unknown type is a control
    record; a BYE is an error.

    Like a L{Walker} it keeps only a frame's head across reads, never its
    messages.

    @ivar records: messages completed so far.
    @ivar controls: the control frames completed since the caller last
        cleared this list, whole.
    @ivar stamps: when C{stamped}, the L{STAMP} of each message completed
        since the caller last cleared this list.
    """

    def __init__(self, maxLength: int, stamped: bool = False) -> None:
        self.stamped = stamped
        self.records = 0
        self.controls: list[bytes] = []
        self.stamps: list[int] = []
        self.maxLength = max(maxLength + MSG_OVERHEAD, BATCH_LIMIT + BATCH_OVERHEAD)
        self._messages = Walker(Int32Records(maxLength), stamped)
        self._held = b""
        # The frame begun: its type (0 when none), the bytes of it still to
        # come, and for a BATCH, its first number and the inner walker's
        # count when it began; for a MSG, its stamp.
        self._kind = 0
        self._left = 0
        self._first = 0
        self._counted = 0
        self._stamp: int | None = None
        self._next: int | None = None

    def feed(self, data: Chunk, end: int | None = None) -> int:
        """
        Take the next chunk received: C{data}, or its first C{end} bytes.

        @return: how many messages it completed.
        @raise ValueError: for a BYE, a frame over the limit or too short
            for its type, or a message out of sequence.
        """
        if end is None:
            end = len(data)
        before = self.records
        pos = 0
        if self._kind:
            pos = self._continue(data, 0, end)
        if self._held and pos < end:
            held = self._held
            joined = held + bytes(data[pos : min(end, pos + _CONTROL_LIMIT)])
            used = self._begin(joined, 0, len(joined))
            if used is None:
                self._held = joined
                return self.records - before
            self._held = b""
            pos += used - len(held)
            if self._kind:
                pos = self._continue(data, pos, end)
        while pos < end:
            used = self._begin(data, pos, end)
            if used is None:
                self._held = bytes(data[pos:end])
                break
            pos += used
            if self._kind:
                pos = self._continue(data, pos, end)
        return self.records - before

    def _begin(self, data: Chunk, pos: int, end: int) -> int | None:
        """
        Take the head of the frame at C{data[pos:end]}, or the whole frame
        for a control one: how many bytes it used, or C{None} if they end
        too soon to tell.
        """
        if end - pos < 5:
            return None
        length, kind = _FRAME_HEAD.unpack_from(data, pos)
        if not length or length > self.maxLength:
            raise ValueError(f"a {length}-byte seq frame, over the {self.maxLength}-byte limit or empty")
        if kind == FrameType.BATCH or kind == FrameType.MSG:
            if length < MSG_OVERHEAD + (4 if kind == FrameType.BATCH else 0):
                raise ValueError(f"a {length}-byte frame of type {kind} is too short")
            head = 4 + MSG_OVERHEAD
            stamped = kind == FrameType.MSG and self.stamped and length >= MSG_OVERHEAD + STAMP.size
            if end - pos < head + (STAMP.size if stamped else 0):
                return None
            self._kind = kind
            self._first = _SEQ.unpack_from(data, pos + 5)[0]
            self._counted = self._messages.records
            self._stamp = STAMP.unpack_from(data, pos + head)[0] if stamped else None
            self._left = 4 + length - head
            return head
        if kind == FrameType.BYE:
            raise ValueError(f"the server said BYE: {bytes(data[pos + 5 : min(end, pos + 4 + length)])!r}")
        if 4 + length > _CONTROL_LIMIT:
            raise ValueError(f"a {length}-byte control frame of type {kind}, longer than expected")
        if end - pos < 4 + length:
            return None
        if kind == FrameType.GAP and length >= 17:
            self._next = _GAP_LAST.unpack_from(data, pos + 13)[0] + 1
        self.controls.append(bytes(data[pos : pos + 4 + length]))
        return 4 + length

    def _continue(self, data: Chunk, pos: int, end: int) -> int:
        """
        Take what C{data[pos:end]} holds of the frame begun (a BATCH's
        messages are walked, a MSG's skipped); count it once it is whole.
        Return where it stopped.
        """
        stop = pos + min(self._left, end - pos)
        self._left -= stop - pos
        messages = self._messages
        if self._kind == FrameType.BATCH:
            messages.feed(data, stop, pos)
            if messages.stamps:
                self.stamps += messages.stamps
                messages.stamps.clear()
        if self._left:
            return stop
        if self._kind == FrameType.BATCH:
            if messages.partial:
                raise ValueError("a BATCH frame ends inside a message")
            self._follow(messages.records - self._counted)
        else:
            self._follow(1)
            if self._stamp is not None:
                self.stamps.append(self._stamp)
        self._kind = 0
        return stop

    def _follow(self, count: int) -> None:
        """
        Count the C{count} messages of the frame just completed, whose first
        number must be the one after the last message's.
        """
        first = self._first
        if self._next is not None and first != self._next:
            raise ValueError(f"message {first} came after {self._next - 1}")
        self._next = first + count
        self.records += count
