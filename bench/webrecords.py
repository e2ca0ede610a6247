"""
Reading streamd's WebSocket and Server-Sent Events streams as a browser
would: every WebSocket frame parsed, every SSE response de-chunked and split
into events, the payload of each event decoded when it is timed.
"""

from __future__ import annotations

import zlib
from base64 import b64decode
from struct import Struct

from bench.records import CONTROL, STAMP, Chunk, sameHeads

_U16 = Struct(">H")
_U64 = Struct(">Q")

TEXT, BINARY, CLOSE, PING, PONG = 0x81, 0x82, 0x88, 0x89, 0x8A
"""
The first byte of the unfragmented frames a server sends: FIN and an opcode.
"""
CONTROL_MESSAGE = 0x1E
"""
The first byte of the text of streamd's own WebSocket messages.
"""
MAX_CONTROL_FRAME = 2 + 125
RSV1 = 0x40
"""
The bit of a message's first byte that says it is compressed
(permessage-deflate, RFC 7692).
"""


class WebSocketFrames:
    """
    The frames a server sends on a WebSocket: unmasked, each stream message
    one text or binary frame (C{compressed}: with RSV1 set or not); pings
    and pongs are control records; a close frame or one of streamd's
    control messages (a C{bye}) is an error.
    """

    maxHead = MAX_CONTROL_FRAME

    def __init__(self, maxLength: int, compressed: bool = False) -> None:
        self.maxLength = maxLength
        self.compressed = compressed

    def parse(self, data: Chunk, pos: int, end: int) -> tuple[int, int] | None:
        if end - pos < 2:
            return None
        first, second = data[pos], data[pos + 1]
        if second & 0x80:
            raise ValueError("the server sent a masked frame")
        length = second & 0x7F
        head = 2 if length < 126 else 4 if length == 126 else 10
        if end - pos < head:
            return None
        if length == 126:
            length = _U16.unpack_from(data, pos + 2)[0]
        elif length == 127:
            length = _U64.unpack_from(data, pos + 2)[0]
        if first in (PING, PONG):
            if length > 125:
                raise ValueError(f"a {length}-byte control frame")
            return (head + length, CONTROL) if end - pos >= head + length else None
        if first == CLOSE:
            raise ValueError(f"the server closed the WebSocket: {bytes(data[pos + head : end])!r}")
        if self.compressed and first in (TEXT | RSV1, BINARY | RSV1):
            if length > self.maxLength:
                raise ValueError(f"a {length}-byte message, over the {self.maxLength}-byte limit")
            return head, length
        if first not in (TEXT, BINARY):
            raise ValueError(f"an unexpected WebSocket frame starting 0x{first:02x}")
        if length > self.maxLength:
            raise ValueError(f"a {length}-byte message, over the {self.maxLength}-byte limit")
        if first == TEXT and length:
            if end - pos <= head:
                return None
            if data[pos + head] == CONTROL_MESSAGE:
                raise ValueError(f"streamd sent a control message: {bytes(data[pos + head : end])!r}")
        return head, length

    def sameRun(self, data: Chunk, pos: int, head: int, length: int, count: int) -> bool:
        """
        Whether the C{count} frames of C{length} bytes from C{pos} all have
        the first one's header (so its opcode and payload length) and, when
        they are text, none begins as one of streamd's control messages: a
        burst is then walked at C speed, as an int32 one is, and a browser
        would.
        """
        if not sameHeads(data, pos, head, length, count):
            return False
        if data[pos] != TEXT or length == head:
            return True
        return CONTROL_MESSAGE not in data[pos + head : pos + count * length : length]


class InflatingWalker:
    """
    Counts and times the messages of a WebSocket that negotiated
    permessage-deflate, as a L{bench.records.Walker} does, but frame by
    frame, each held whole and a compressed one inflated for its stamp:
    for the few subscriber connections whose messages are timed.
    """

    def __init__(self, maxLength: int) -> None:
        self.records = 0
        self.controls: list[bytes] = []
        self.stamps: list[int] = []
        self._frames = WebSocketFrames(maxLength, compressed=True)
        self._held = bytearray()

    def feed(self, data: Chunk, end: int | None = None) -> int:
        """
        Take the next chunk received: C{data}, or its first C{end} bytes.

        @return: how many messages it completed.
        """
        held = self._held
        held += data[:end] if end is not None else data
        before = self.records
        pos = 0
        while (parsed := self._frames.parse(held, pos, len(held))) is not None:
            head, length = parsed
            if length == CONTROL:
                self.controls.append(bytes(held[pos : pos + head]))
                pos += head
                continue
            if len(held) - pos < head + length:
                break
            payload = bytes(held[pos + head : pos + head + length])
            if held[pos] & RSV1:
                payload = zlib.decompressobj(-zlib.MAX_WBITS).decompress(payload + b"\x00\x00\xff\xff")
            self.records += 1
            if len(payload) >= STAMP.size:
                self.stamps.append(STAMP.unpack_from(payload)[0])
            pos += head + length
        del held[:pos]
        return self.records - before


def pong(ping: bytes, mask: bytes) -> bytes:
    """
    A client's (masked) answer to the C{ping} frame: the same application
    data, in a pong frame.
    """
    data = ping[2:]
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes((PONG, 0x80 | len(data))) + mask + masked


class Dechunker:
    """
    Undoes HTTP/1.1's chunked transfer coding, however the stream is split.
    """

    def __init__(self) -> None:
        self._raw = bytearray()
        self._left = 0
        self._crlf = False

    def feed(self, data: Chunk) -> bytearray:
        """
        The body bytes in C{data} and what came before it.

        @raise ValueError: if the coding is broken or the body ends.
        """
        raw = self._raw
        raw += data
        out = bytearray()
        pos = 0
        while pos < len(raw):
            if self._left:
                take = min(self._left, len(raw) - pos)
                out += raw[pos : pos + take]
                pos += take
                self._left -= take
                self._crlf = not self._left
            elif self._crlf:
                if len(raw) - pos < 2:
                    break
                if raw[pos : pos + 2] != b"\r\n":
                    raise ValueError(f"no CRLF after a chunk: {bytes(raw[pos : pos + 2])!r}")
                pos += 2
                self._crlf = False
            else:
                line = raw.find(b"\r\n", pos)
                if line < 0:
                    if len(raw) - pos > 64:
                        raise ValueError(f"not a chunk size: {bytes(raw[pos : pos + 64])!r}")
                    break
                size = int(raw[pos:line].split(b";")[0], 16)
                if not size:
                    raise ValueError("the server ended the event stream")
                self._left = size
                pos = line + 2
        del raw[:pos]
        return out


class SseWalker:
    """
    Counts the events of one SSE response (after its headers), as a
    L{bench.records.Walker} counts records: stream messages are
    events with an C{id:} and C{data:} lines (or a C{binary} event of
    base64); named events and comments are control records, which need no
    answer; a C{bye} is an error.

    @ivar records: messages completed so far.
    @ivar controls: always empty: no event asks for an answer.
    @ivar stamps: when C{stamped}, the L{STAMP} of each message completed
        since the caller last cleared this list.
    """

    def __init__(self, stamped: bool = False) -> None:
        self.stamped = stamped
        self.records = 0
        self.controls: list[bytes] = []
        self.stamps: list[int] = []
        self._chunks = Dechunker()
        self._events = bytearray()

    def feed(self, data: Chunk, end: int | None = None) -> int:
        """
        Take the next chunk received: C{data}, or its first C{end} bytes.

        @return: how many messages it completed.
        @raise ValueError: for anything but events of the daemon's forms.
        """
        events = self._events
        events += self._chunks.feed(data[:end] if end is not None else data)
        before = self.records
        pos = 0
        while (stop := events.find(b"\n\n", pos)) >= 0:
            self._event(bytes(events[pos:stop]))
            pos = stop + 2
        del events[:pos]
        return self.records - before

    def _event(self, block: bytes) -> None:
        if not block.startswith(b"id: "):
            if block.startswith(b"event: bye"):
                raise ValueError(f"the server said bye: {block!r}")
            if not block.startswith((b":", b"retry: ", b"event: ")):
                raise ValueError(f"not an event: {block[:80]!r}")
            return
        line = block.find(b"\n")
        body = block[line + 1 :]
        if body.startswith(b"event: binary\ndata: "):
            payload = b64decode(body[20:], validate=True) if self.stamped else b""
        elif body.startswith(b"data: ") and body.count(b"\ndata: ") == body.count(b"\n"):
            payload = body[6:].replace(b"\ndata: ", b"\n") if self.stamped else b""
        else:
            raise ValueError(f"an event of an unknown form: {block[:80]!r}")
        self.records += 1
        if self.stamped and len(payload) >= STAMP.size:
            self.stamps.append(STAMP.unpack_from(payload)[0])
