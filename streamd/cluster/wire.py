"""
streamd frames in NATS messages.

A NATS message holds whole int32 frames, exactly as a client sent them: a
batch published on one node is one message (or a few, if it is larger than
the server's C{max_payload}), so the hand-over between threads and the fan-in
from other nodes cost one step per batch, not per message.  A single frame
larger than C{max_payload} travels in parts, each a NATS message with
headers naming the node that sent it and the part's place; parts from one
node arrive in order (one connection), so the receiver joins them per node.
"""

from __future__ import annotations

from collections.abc import Iterator
from struct import Struct

NODE = "Streamd-Node"
PART = "Streamd-Part"
HEADER_ROOM = 256
"""
Bytes of a part's NATS message left for its headers, which count towards
the server's C{max_payload}.
"""

_LENGTH = Struct(">I")

Message = tuple[bytes, "dict[str, str] | None"]


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

    def __init__(self, node: str, limit: int) -> None:
        self.node = node
        self.limit = limit

    def pack(self, blocks: list[bytes]) -> list[Message]:
        """
        NATS messages that carry the frames of C{blocks}, in order.
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
                    messages.append((b"".join(pending), None))
                    pending, size = [], 0
                if length > limit:
                    messages.extend(self.parts(block[start:stop]))
                else:
                    pending.append(block[start:stop])
                    size += length
        if pending:
            messages.append((b"".join(pending), None))
        return messages

    def parts(self, frame: bytes) -> list[Message]:
        """
        One frame too large for a NATS message, in parts.
        """
        room = self.limit - HEADER_ROOM
        count = -(-len(frame) // room)
        return [
            (frame[i * room : (i + 1) * room], {NODE: self.node, PART: f"{i}/{count}"}) for i in range(count)
        ]


class Joiner:
    """
    Joins the parts of frames too large for one NATS message, per node.

    @ivar lost: frames given up because a part of them did not arrive.
    """

    def __init__(self, maxFrame: int) -> None:
        self.maxFrame = maxFrame
        self.lost = 0
        # Per node: the next part expected, the parts so far (None while
        # skipping the rest of a frame given up) and their size.
        self._partial: dict[str, tuple[int, list[bytes] | None, int]] = {}

    def feed(self, data: bytes, headers: dict[str, str] | None) -> bytes:
        """
        The whole frames that NATS message C{data} completes: itself, unless
        it is a part, or a joined frame once its last part arrived.
        """
        if not headers or PART not in headers:
            return data
        node = headers.get(NODE, "")
        try:
            index, count = map(int, headers[PART].split("/"))
        except ValueError:
            self.lost += 1
            return b""
        expected, chunks, size = self._partial.pop(node, (0, [], 0))
        if index != expected:
            # A part was lost (a gap, or a slow subscription): give up the
            # frame, and skip the rest of one whose start was missed.
            if chunks is not None or index:
                self.lost += 1
            chunks, size = [], 0
            if index:
                return self._skip(node, index, count)
        elif chunks is None:
            return self._skip(node, index, count)
        chunks.append(data)
        size += len(data)
        if size > self.maxFrame:
            self.lost += 1
            return self._skip(node, index, count)
        if index + 1 == count:
            return b"".join(chunks)
        self._partial[node] = (index + 1, chunks, size)
        return b""

    def _skip(self, node: str, index: int, count: int) -> bytes:
        """
        Drop the parts of C{node}'s frame that follow part C{index}.
        """
        if index + 1 < count:
            self._partial[node] = (index + 1, None, 0)
        return b""
