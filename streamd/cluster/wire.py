"""
streamd frames in NATS messages.

A NATS message holds whole int32 frames, exactly as a client sent them: a
batch published on one node is one message (or a few, if it is larger than
the server's C{max_payload}), so the hand-over between threads and the fan-in
from other nodes cost one step per batch, not per message.  A message holds
one stream's frames only: its subject (C{PREFIX.NAME}) names the stream.  A
single frame
larger than C{max_payload} travels in parts, each a NATS message with
headers naming the node that sent it, the frame (a number of that node's)
and the part's place; parts from one node arrive in order (one connection,
one subscription), so the receiver joins them per node, holding at most one
frame per node, at most L{Joiner.totalBytes} in all, for at most
L{PART_SECONDS}.

With a L{Signer}, every message also names its node and carries a
signature over the node, the part header, the subject and the payload: a
signed message replayed on another stream's subject is not signed there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from struct import Struct

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from streamd.cluster.guard import NODE_ID, Drop, Signer

NODE = "Streamd-Node"
PART = "Streamd-Part"
SIGNATURE = "Streamd-Signature"
HEADER_ROOM = 512
"""
Bytes of a NATS message left for its headers, which count towards the
server's C{max_payload}.
"""
PART_SECONDS = 10.0
"""
Seconds a large message's parts have to arrive, from its first part.
"""
PART_BYTES = 64 * 1024 * 1024
"""
Bytes the unfinished large messages of all nodes may hold together, unless
four of the largest allowed need more.
"""

_LENGTH = Struct(">I")
_PART = re.compile(r"([0-9a-f]{1,16}):([0-9]{1,9})/([0-9]{1,9})\Z")

Message = tuple[bytes, "dict[str, str] | None"]
Addressed = tuple[str, bytes, "dict[str, str] | None"]
"""
A NATS message and its subject.
"""


def frameSpans(block: bytes) -> Iterator[tuple[int, int]]:
    """
    Where each int32 frame of C{block}, which holds only whole frames,
    starts and ends.
    """
    offset = 0
    end = len(block)
    while offset < end:
        stop = offset + 4 + _LENGTH.unpack_from(block, offset)[0]
        yield offset, stop
        offset = stop


class Packer:
    """
    Turns this node's batches into NATS messages of at most C{limit} bytes.
    """

    def __init__(self, node: str, limit: int, signer: Signer | None = None) -> None:
        self.node = node
        self.limit = limit
        self.signer = signer
        self._frames = 0

    def packEach(self, batches: list[tuple[str, bytes]]) -> list[Addressed]:
        """
        NATS messages that carry C{batches} (each a subject and its frames):
        those of one subject together, in order, never with another's.
        """
        blocks: dict[str, list[bytes]] = {}
        for subject, data in batches:
            blocks.setdefault(subject, []).append(data)
        return [(subject, *message) for subject, run in blocks.items() for message in self.pack(subject, run)]

    def pack(self, subject: str, blocks: list[bytes]) -> list[Message]:
        """
        NATS messages for C{subject} that carry the frames of C{blocks}, in
        order.
        """
        limit = self.limit
        messages: list[Message] = []
        pending: list[bytes] = []
        size = 0
        for block in blocks:
            if size + len(block) <= limit:
                pending.append(block)
                size += len(block)
                continue
            for start, stop in frameSpans(block):
                length = stop - start
                if size + length > limit and pending:
                    messages.append(self._whole(subject, b"".join(pending)))
                    pending, size = [], 0
                if length > limit:
                    messages.extend(self.parts(subject, block[start:stop]))
                else:
                    pending.append(block[start:stop])
                    size += length
        if pending:
            messages.append(self._whole(subject, b"".join(pending)))
        return messages

    def _whole(self, subject: str, data: bytes) -> Message:
        if self.signer is None:
            return data, None
        return data, {NODE: self.node, SIGNATURE: self.signer.sign(data, self.node, "", subject)}

    def parts(self, subject: str, frame: bytes) -> list[Message]:
        """
        One frame too large for a NATS message, in parts, for C{subject}.
        """
        self._frames += 1
        room = self.limit - HEADER_ROOM
        count = -(-len(frame) // room)
        messages: list[Message] = []
        for i in range(count):
            data = frame[i * room : (i + 1) * room]
            headers = {NODE: self.node, PART: f"{self._frames:x}:{i}/{count}"}
            if self.signer is not None:
                headers[SIGNATURE] = self.signer.sign(data, self.node, headers[PART], subject)
            messages.append((data, headers))
        return messages


def signedBy(signer: Signer, subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
    """
    Whether a core-mode NATS message on C{subject} carries C{signer}'s
    signature.
    """
    if not headers:
        return False
    return signer.verify(headers.get(SIGNATURE), data, headers.get(NODE, ""), headers.get(PART, ""), subject)


class _Partial:
    """
    The parts of one large frame received so far, on one subject.
    """

    __slots__ = ("subject", "frame", "next", "count", "chunks", "size", "started")

    def __init__(self, subject: str, frame: str, count: int, started: float) -> None:
        self.subject = subject
        self.frame = frame
        self.next = 0
        self.count = count
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = started


class Joiner:
    """
    Joins the parts of frames too large for one NATS message, per node.

    @ivar held: bytes of parts held now, for every node.
    """

    def __init__(
        self,
        maxFrame: int,
        clock: IReactorTime,
        dropped: Callable[[Drop, str, str], None],
        totalBytes: int | None = None,
        seconds: float = PART_SECONDS,
    ) -> None:
        self.maxFrame = maxFrame
        self.clock = clock
        self.dropped = dropped
        self.totalBytes = max(4 * maxFrame, PART_BYTES) if totalBytes is None else totalBytes
        self.seconds = seconds
        self.held = 0
        self._partial: dict[str, _Partial] = {}
        self._sweep: IDelayedCall | None = None

    def feed(self, subject: str, data: bytes, headers: dict[str, str] | None) -> bytes:
        """
        The whole frames that NATS message C{data}, received on C{subject},
        completes: itself, unless it is a part, or a joined frame once its
        last part arrived (every part on the subject of the first).
        """
        if not headers or PART not in headers:
            return data
        node = headers.get(NODE, "")
        found = _PART.match(headers[PART])
        if found is None or not NODE_ID.match(node) or int(found.group(2)) >= int(found.group(3)):
            self.dropped(Drop.BAD_HEADER, node, subject)
            return b""
        frame, index, count = found.group(1), int(found.group(2)), int(found.group(3))
        partial = self._partial.get(node)
        if index == 0:
            if partial is not None:
                # The node began another frame: the last one lost a part.
                self.dropped(Drop.BAD_PART, node, self._forget(node).subject)
            partial = self._partial[node] = _Partial(subject, frame, count, self.clock.seconds())
            if self._sweep is None:
                self._sweep = self.clock.callLater(self.seconds, self._expire)
        elif partial is None or (partial.subject, partial.frame, partial.next, partial.count) != (
            subject,
            frame,
            index,
            count,
        ):
            # A part whose frame began before this node listened, or was
            # given up; or one out of place, which spoils its frame (one on
            # another stream's subject is not of it).
            if partial is not None and (partial.subject, partial.frame) == (subject, frame):
                self._forget(node)
            self.dropped(Drop.BAD_PART, node, subject)
            return b""
        partial.size += len(data)
        self.held += len(data)
        if partial.size > self.maxFrame:
            self._forget(node)
            self.dropped(Drop.TOO_LARGE, node, subject)
            return b""
        if self.held > self.totalBytes:
            self._forget(node)
            self.dropped(Drop.PART_MEMORY, node, subject)
            return b""
        partial.chunks.append(data)
        if index + 1 < count:
            partial.next += 1
            return b""
        self._forget(node)
        return b"".join(partial.chunks)

    def _forget(self, node: str) -> _Partial:
        partial = self._partial.pop(node)
        self.held -= partial.size
        return partial

    def _expire(self) -> None:
        """
        Give up the frames whose parts did not all come in time.
        """
        self._sweep = None
        deadline = self.clock.seconds() - self.seconds
        for node, partial in list(self._partial.items()):
            if partial.started <= deadline:
                self._forget(node)
                self.dropped(Drop.PART_TIMEOUT, node, partial.subject)
        if self._partial:
            oldest = min(partial.started for partial in self._partial.values())
            self._sweep = self.clock.callLater(max(0.0, oldest - deadline), self._expire)

    def stop(self) -> None:
        """
        Drop every unfinished frame and stop the timer.
        """
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._partial.clear()
        self.held = 0
