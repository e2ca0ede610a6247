"""
How the stream looks on the web: WebSocket frames and Server-Sent Events,
each made once per history entry and shared by every subscriber of its kind
(C{docs/web.rst} specifies both).

A stream message is one WebSocket message, text when it is valid UTF-8 and
binary otherwise; the daemon's own messages are text that begins with
U+001E (RECORD SEPARATOR, as in RFC 7464) and one JSON object, so a stream
message that would be text beginning with that character is sent as binary.
It is one event whose C{id:} is C{EPOCH-SEQ}: its C{data:} lines, or a
C{binary} event of its base64 when it is not UTF-8 or holds a carriage
return; the daemon's own events are named.

To a client of several streams (C{/ws/SUBJECTS}, C{/events/SUBJECTS}), each
stream is sent in a framing of its own that says the stream, made once per
entry for all of that stream's subscribers: an entry's WebSocket messages
come after an C{in} control message that names the stream and the number of
the first, and an event's id is C{NAME/EPOCH-SEQ}.
"""

from __future__ import annotations

import json
import random
from base64 import b64encode
from collections.abc import Sequence
from functools import lru_cache
from struct import Struct
from typing import Any

from streamd.fanout.history import History
from streamd.fanout.hub import Hub
from streamd.fanout.resume import Gap, GapReason, StartPoint
from streamd.framing import INT32, Framing, Payload
from streamd.reasons import Reason

CONTROL = b"\x1e"
"""
The first byte of every control message.
"""

PING = b"\x89\x00"
"""
An unmasked ping frame with no payload: the heartbeat.
"""

_SHORT = Struct(">BBH")
_LONG = Struct(">BBQ")
_TEXT = 0x81
_BINARY = 0x82


def frame(payload: Payload) -> bytes:
    """
    One unmasked, final WebSocket frame carrying C{payload}: text when it is
    valid UTF-8 and does not begin with L{CONTROL}, binary otherwise.
    """
    data = bytes(payload)
    return frameHeader(firstByte(data), len(data)) + data


def firstByte(data: bytes) -> int:
    """
    The first byte of the final frame of the message C{data}: FIN and the
    text opcode when it is valid UTF-8 and does not begin with L{CONTROL},
    the binary opcode otherwise.
    """
    return _TEXT if _isText(data) else _BINARY


def frames(payloads: Sequence[Payload], raw: bytes | None = None) -> bytes:
    """
    The L{frame} of each of C{payloads}, joined.  This runs for every entry
    WebSocket clients are sent, so a batch that is all ASCII with no
    L{CONTROL} byte (all text, then) costs no Python work per message: its
    headers are looked up and interleaved with the payloads in C, and a
    fixed-size feed's (all of the first's length) is one header joining
    them.

    @param raw: the same messages in int32 framing, if the caller has them:
        when they are ASCII with no L{CONTROL} byte, headers included, so
        are the payloads, which then need not be joined to be checked.
    """
    count = len(payloads)
    if count <= 1:
        return frame(payloads[0]) if count else b""
    if raw is not None and raw.isascii() and CONTROL not in raw:
        size = len(raw) - INT32.headerSize * count
    else:
        joined = b"".join(payloads)
        if not joined.isascii() or CONTROL in joined:
            return b"".join([frame(p) for p in payloads])
        size = len(joined)
    length = len(payloads[0])
    if length * count == size:
        header = _textHeader(length)
        framed = header.join([b"", *payloads])
        # Every payload is ASCII, so the headers' first byte (not ASCII) is
        # found only where they begin: at every stride exactly when each
        # payload has the first's length, not just their sum.
        if framed[:: len(header) + length] == header[:1] * count:
            return framed
    parts: list[Payload] = [b""] * (2 * count)
    parts[::2] = map(_textHeader, map(len, payloads))
    parts[1::2] = payloads
    return b"".join(parts)


def _isText(data: bytes) -> bool:
    if data.startswith(CONTROL):
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def frameHeader(opcode: int, length: int) -> bytes:
    """
    The header of an unmasked frame whose first byte is C{opcode} and whose
    payload is C{length} bytes.
    """
    if length < 126:
        return bytes((opcode, length))
    if length < 65536:
        return _SHORT.pack(opcode, 126, length)
    return _LONG.pack(opcode, 127, length)


@lru_cache(maxsize=4096)
def _textHeader(length: int) -> bytes:
    return frameHeader(_TEXT, length)


def control(message: dict[str, Any]) -> bytes:
    """
    A control message as one text frame.
    """
    data = CONTROL + json.dumps(message, separators=(",", ":")).encode()
    return frameHeader(_TEXT, len(data)) + data


class WebSocketFraming(Framing):
    """
    Stream messages as WebSocket frames, for a L{Cursor}: the history makes
    an entry's frames once for every WebSocket subscriber.
    """

    name = "websocket"
    headerSize = 0
    maxLength = 2**63 - 1

    def encode(self, payload: bytes) -> bytes:
        return frame(payload)

    def encodeMany(self, payloads: Sequence[Payload]) -> bytes:
        return frames(payloads)

    def reframe(
        self, data: bytes, dataFraming: Framing, first: int, payloads: Sequence[Payload] | None = None
    ) -> bytes | None:
        # An int32 entry's bytes tell at once whether its messages are text.
        if payloads is None or dataFraming is not INT32:
            return None
        return frames(payloads, data)


WEBSOCKET = WebSocketFraming()


class StreamWebSocketFraming(WebSocketFraming):
    """
    The stream C{stream} as WebSocket frames for clients of several
    streams: each entry's messages after an C{in} control message that
    names the stream and the number of the first.
    """

    def __init__(self, stream: str) -> None:
        self.stream = stream

    def encodeEntry(self, payloads: Sequence[Payload], first: int) -> bytes:
        return self._inMessage(first) + self.encodeMany(payloads)

    def reframe(
        self, data: bytes, dataFraming: Framing, first: int, payloads: Sequence[Payload] | None = None
    ) -> bytes | None:
        framed = super().reframe(data, dataFraming, first, payloads)
        return None if framed is None else self._inMessage(first) + framed

    def _inMessage(self, first: int) -> bytes:
        return control({"type": "in", "stream": self.stream, "first": first})


KEEPALIVE = b": keepalive\n\n"
"""
The SSE heartbeat: a comment, which a browser ignores and a proxy sees.
"""


def event(payload: Payload, eventId: str) -> bytes:
    """
    One stream message as an event.
    """
    data = bytes(payload)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\r" in text:
        return b"id: %s\nevent: binary\ndata: %s\n\n" % (eventId.encode(), b64encode(data))
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"id: {eventId}\n{lines}\n".encode()


def eventBatch(payloads: Sequence[Payload], prefix: str, first: int) -> bytes:
    """
    The L{event} of each of C{payloads}, their ids C{PREFIX-SEQ} numbered
    from C{first}, joined.  This runs for every entry SSE clients are sent,
    so a batch that is all ASCII with no line break (one C{data:} line a
    message, nothing to decode) is formatted in one pass in C, not message
    by message in Python.
    """
    joined = b"".join(payloads)
    if not joined.isascii() or b"\n" in joined or b"\r" in joined:
        return b"".join([event(p, f"{prefix}-{first + i}") for i, p in enumerate(payloads)])
    head = b"id: %s-" % prefix.encode()
    return b"".join([b"%s%d\ndata: %s\n\n" % (head, seq, p) for seq, p in enumerate(payloads, first)])


def namedEvent(name: str, message: dict[str, Any]) -> bytes:
    """
    One of the daemon's own events, its data a JSON object.
    """
    return f"event: {name}\ndata: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


def chunk(data: bytes) -> bytes:
    """
    C{data} as one chunk of an HTTP/1.1 chunked body.
    """
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"


class EventFraming(Framing):
    """
    Stream messages as events with ids of the history's epoch, for a
    L{Cursor}: the history makes an entry's events once for every SSE
    subscriber (of each kind: HTTP/1.1 answers are C{chunked}, one chunk an
    entry, HTTP/1.0 ones are not).
    """

    name = "sse"
    headerSize = 0
    maxLength = 2**63 - 1

    def __init__(self, history: History, chunked: bool = False) -> None:
        self.history = history
        self.chunked = chunked

    def encodeEntry(self, payloads: Sequence[Payload], first: int) -> bytes:
        data = eventBatch(payloads, self.idPrefix(), first)
        return chunk(data) if self.chunked else data

    def idPrefix(self) -> str:
        """
        What an event's id says before C{-SEQ}: the history's epoch (read
        when the entry is encoded: a cluster's node adopts its epoch before
        its first message).
        """
        return self.history.epoch.hex()


class StreamEventFraming(EventFraming):
    """
    The stream C{stream} as events for clients of several streams: each
    event's id is C{NAME/EPOCH-SEQ}, so a browser's C{lastEventId} names
    the stream it resumes.
    """

    def __init__(self, stream: str, history: History, chunked: bool = False) -> None:
        super().__init__(history, chunked)
        self.stream = stream

    def idPrefix(self) -> str:
        return f"{self.stream}/{self.history.epoch.hex()}"


SHUTDOWN_RETRY_MS = (1000, 5000)
"""
The range a client told goodbye at shutdown is given its wait before
reconnecting from, at random, so that the clients of a restarted daemon do
not all come back in the same second.
"""


def byeMessage(reason: Reason) -> dict[str, Any]:
    """
    Why the daemon closes, as the web's C{bye} message (WebSocket and SSE
    alike): the reason, its code, whether to connect again, and at
    shutdown how many milliseconds to wait first (C{retry}).
    """
    message: dict[str, Any] = {"reason": reason.label, "code": reason.value, "reconnect": reason.reconnect}
    if reason is Reason.SHUTDOWN:
        message["retry"] = random.randint(*SHUTDOWN_RETRY_MS)
    return message


def gapMessage(gap: Gap, stream: str | None = None) -> dict[str, Any]:
    """
    C{gap} as the web's C{gap} message (WebSocket and SSE alike), in the
    stream C{stream} for a client of several.
    """
    message: dict[str, Any] = {} if stream is None else {"stream": stream}
    message.update(first=gap.first, last=gap.last, reason=GapReason(gap.reason).label)
    return message


def streamMessage(hub: Hub, point: StartPoint) -> dict[str, Any]:
    """
    The web's C{stream} message, which tells a client of several streams
    that C{hub}'s starts at C{point}: its name, its epoch, and the number
    of its next message.
    """
    return {"stream": hub.name, "epoch": hub.history.epoch.hex(), "next": point.next}


def refusedMessage(subject: str, why: str) -> dict[str, Any]:
    """
    The web's C{refused} message: the subscription to C{subject} (or a
    message for it) is refused, C{why} in one line.
    """
    return {"subject": subject, "error": why}
