"""
The client side of each server under test: how to open a connection, how to
publish a message, how to subscribe, and what a subscriber receives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from struct import Struct

from bench.records import (
    Chunk,
    Int32Records,
    NatsMessages,
    RecordFormat,
    RespMessages,
    SeqRecords,
    SeqWalker,
    Walker,
)
from bench.webrecords import InflatingWalker, SseWalker, WebSocketFrames, pong
from streamd.seqframing import (
    STREAMS_VERSION,
    ClientHello,
    FrameType,
    Pong,
    ServerHello,
    Start,
    decodeServerFrame,
    framed,
)

AnyWalker = Walker | SseWalker | SeqWalker | InflatingWalker
"""
What counts a subscriber's messages, whatever its wire.
"""

CHANNEL = b"bench"
"""
The Redis channel and the NATS subject of every run.
"""
NATS_SID = b"1"

_INT32 = Struct(">I")

ONE_STREAM_VERSION = STREAMS_VERSION - 1
"""
The C{seq} version that the subscribers of burst, paced and resume speak:
that of every client of one stream.  A client of version 4 asking for a
start is sent its stream in SMSG and SBATCH frames, through the frames of
several streams (a different path, measured by the scenarios of named
streams, L{bench.named}), and a daemon from before named streams speaks 3.
"""


class Wire:
    """
    One server's protocol, as a plain-socket client speaks it.

    A client opens its connection by sending L{request} and waiting until
    L{answered} says the server has answered it: subscribers ask to
    subscribe, publishers whatever the server wants before a publish.

    @ivar name: the server's name in reports.
    @ivar listener: which of the server's listeners subscribers connect to:
        C{"main"}, or another of streamd's (L{bench.servers.LISTENERS}).
    @ivar serverOptions: the twistd plugin options streamd needs for it.
    @ivar secure: whether its subscribers speak it over TLS.
    @ivar alsoOver: the name of the wire whose figures the report also
        divides this one's by, when the run has it: its own protocol's
        baseline on the same transport (int32's is always one).
    """

    name: str
    listener = "main"
    serverOptions: tuple[str, ...] = ()
    secure = False
    alsoOver: str | None = None
    countedInC = False
    """
    Whether its subscribers are L{bench.ssereader}'s C program, which
    counts and does not time (burst only), rather than Python's.
    """

    @property
    def publisher(self) -> Wire:
        """
        The wire publishers speak, on the server's main listener.
        """
        return self

    def records(self, maxLength: int) -> RecordFormat:
        """
        The layout of what a subscriber receives.
        """
        raise NotImplementedError

    def walker(self, maxLength: int, stamped: bool) -> AnyWalker:
        """
        What counts (and, if C{stamped}, times) a subscriber's messages.
        """
        return Walker(self.records(maxLength), stamped)

    trailer = b""

    def reply(self, control: bytes) -> bytes:
        """
        A subscriber's answer to the C{control} record it received.
        """
        return b""

    def header(self, size: int) -> bytes:
        """
        What precedes a C{size}-byte payload in the bytes that publish it.
        """
        raise NotImplementedError

    def message(self, payload: bytes) -> bytes:
        """
        The bytes that publish C{payload}.
        """
        return self.header(len(payload)) + payload + self.trailer

    def request(self, subscriber: bool) -> bytes:
        """
        What a new connection sends first: as a subscriber, or as a
        publisher.
        """
        return b""

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        """
        How many bytes at the start of C{received} answer L{request}, or
        C{None} while the answer is incomplete.

        @raise ConnectionError: if the server refused or said something else.
        """
        return 0

    def replies(self, sock: socket.socket, received: Chunk) -> None:
        """
        Deal with what the server sent a publisher after the opening
        (C{received}, one read): answer what must be answered, raise
        C{ConnectionError} for an error; drop the rest.
        """

    def open(self, sock: socket.socket, subscriber: bool) -> None:
        """
        Open the connected blocking C{sock} as a subscriber or a publisher:
        send L{request}, and return once the server has answered it.
        """
        request = self.request(subscriber)
        if request:
            sock.sendall(request)
        received = b""
        while (used := self.answered(received, subscriber)) is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{self.name} closed a connection while it opened: {received!r}")
            received += chunk
        if used != len(received):
            raise ConnectionError(f"{self.name} sent more than an answer: {received[used:]!r}")

    def subscribe(self, sock: socket.socket) -> None:
        """
        Make the connected blocking C{sock} a subscriber.
        """
        self.open(sock, subscriber=True)


class StreamdWire(Wire):
    """
    streamd: every connection receives what any other one sends.
    """

    name = "streamd"

    def records(self, maxLength: int) -> RecordFormat:
        return Int32Records(maxLength)

    def header(self, size: int) -> bytes:
        return _INT32.pack(size)


class RedisWire(Wire):
    """
    Redis pub/sub on one channel, in RESP2.
    """

    name = "redis"
    trailer = b"\r\n"
    _confirmation = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(CHANNEL), CHANNEL)

    def records(self, maxLength: int) -> RecordFormat:
        return RespMessages(CHANNEL)

    def header(self, size: int) -> bytes:
        return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(CHANNEL), CHANNEL, size)

    def request(self, subscriber: bool) -> bytes:
        if not subscriber:
            return b""
        return b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL)

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        if not subscriber:
            return 0
        expected = self._confirmation
        if not expected.startswith(bytes(received[: len(expected)])):
            raise ConnectionError(f"redis answered SUBSCRIBE with {bytes(received)!r}")
        return len(expected) if len(received) >= len(expected) else None


class NatsWire(Wire):
    """
    Core NATS on one subject, in its text protocol.

    The server greets every connection with C{INFO}; a client sends
    C{CONNECT} (without C{+OK} acknowledgements), a subscriber C{SUB}, and
    both a C{PING}: its C{PONG} says the server has taken all of it, the
    subscription included.  Publishers and subscribers answer the server's
    C{PING}s.
    """

    name = "nats"
    trailer = b"\r\n"
    _connect = b'CONNECT {"verbose":false,"pedantic":false}\r\n'

    def records(self, maxLength: int) -> RecordFormat:
        return NatsMessages(CHANNEL, NATS_SID)

    def header(self, size: int) -> bytes:
        return b"PUB %s %d\r\n" % (CHANNEL, size)

    def request(self, subscriber: bool) -> bytes:
        sub = b"SUB %s %s\r\n" % (CHANNEL, NATS_SID) if subscriber else b""
        return self._connect + sub + b"PING\r\n"

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        data = bytes(received)
        if len(data) >= 5 and not data.startswith(b"INFO "):
            raise ConnectionError(f"nats did not start with INFO: {data[:80]!r}")
        info = data.find(b"\r\n")
        if info < 0:
            return None
        rest = data[info + 2 :]
        if rest.startswith(b"-ERR"):
            raise ConnectionError(f"nats refused the connection: {rest.strip()!r}")
        if not b"PONG\r\n".startswith(rest[:6]):
            raise ConnectionError(f"nats answered with {rest[:80]!r} instead of PONG")
        return info + 2 + 6 if len(rest) >= 6 else None

    def reply(self, control: bytes) -> bytes:
        return b"PONG\r\n"

    def replies(self, sock: socket.socket, received: Chunk) -> None:
        data = bytes(received)
        error = data.find(b"-ERR")
        if error >= 0:
            raise ConnectionError(f"nats: {data[error:].splitlines()[0].decode('ascii', 'replace')}")
        for _ in range(data.count(b"PING\r\n")):
            sock.sendall(b"PONG\r\n")


STREAMD = StreamdWire()


class _StreamdVariant(Wire):
    """
    Subscribers on another of streamd's listeners; publishers speak int32
    on the main one.
    """

    @property
    def publisher(self) -> Wire:
        return STREAMD


class SeqWire(_StreamdVariant):
    """
    streamd's C{seq} listener: a subscriber's HELLO asks for the stream
    from the next message, in L{ONE_STREAM_VERSION}, the server's HELLO
    answers, then BATCH and MSG frames (L{SeqWalker}); a PING is answered
    with a PONG.
    """

    name = "streamd seq"
    listener = "seq"

    def records(self, maxLength: int) -> RecordFormat:
        """
        A version 1 stream's frames, all MSG.
        """
        return SeqRecords(maxLength)

    def walker(self, maxLength: int, stamped: bool) -> AnyWalker:
        return SeqWalker(maxLength, stamped)

    def request(self, subscriber: bool) -> bytes:
        return framed(ClientHello(ONE_STREAM_VERSION, Start.NEWEST, bytes(8), 0))

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        frame = seqFrame(received)
        if frame is None:
            return None
        payload, used = frame
        if not isinstance(decodeServerFrame(payload), ServerHello):
            raise ConnectionError(f"a seq listener answered HELLO with {payload[:80]!r}")
        return used

    def reply(self, control: bytes) -> bytes:
        return framed(Pong()) if control[4] == FrameType.PING else b""


def seqFrame(received: Chunk, pos: int = 0) -> tuple[bytes, int] | None:
    """
    The payload of the int32 frame at C{received[pos:]} and the offset after
    it, or C{None} if it is not all there.
    """
    if len(received) - pos < 4:
        return None
    end = pos + 4 + _INT32.unpack_from(received, pos)[0]
    return (bytes(received[pos + 4 : end]), end) if len(received) >= end else None


_HEADERS_LIMIT = 16 * 1024


def _httpHead(received: Chunk, status: bytes) -> tuple[dict[bytes, bytes], int] | None:
    """
    The headers of the HTTP response at the start of C{received} (names in
    lower case) and their length, or C{None} while they are incomplete.

    @raise ConnectionError: if the status is not C{status}.
    """
    data = bytes(received)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > _HEADERS_LIMIT:
            raise ConnectionError(f"no end to the HTTP headers: {data[:80]!r}")
        return None
    lines = data[:end].split(b"\r\n")
    if lines[0].split(b" ")[1:2] != [status]:
        raise ConnectionError(f"the server answered {lines[0]!r}, not {status.decode()}")
    fields = dict(line.split(b":", 1) for line in lines[1:])
    return {name.strip().lower(): value.strip() for name, value in fields.items()}, end + 4


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketWire(_StreamdVariant):
    """
    streamd's C{/ws}, as a browser speaks it: the opening handshake (its
    key made once per process), checked, then streamd's C{hello} control
    message; then one frame per message, pings answered with pongs.
    """

    name = "streamd ws"
    listener = "http"
    offer = b""

    def __init__(self) -> None:
        self._key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(self._key + _WS_GUID).digest())

    def records(self, maxLength: int) -> RecordFormat:
        return WebSocketFrames(maxLength)

    def request(self, subscriber: bool) -> bytes:
        return (
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (self._key, self.offer)
        )

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        head = _httpHead(received, b"101")
        if head is None:
            return None
        headers, pos = head
        if headers.get(b"sec-websocket-accept") != self._accept:
            raise ConnectionError(f"a wrong Sec-WebSocket-Accept: {headers.get(b'sec-websocket-accept')!r}")
        if self.offer and not headers.get(b"sec-websocket-extensions", b"").startswith(b"permessage-deflate"):
            raise ConnectionError("the server did not accept permessage-deflate")
        if len(received) - pos < 2:
            return None
        length = received[pos + 1]
        if received[pos] != 0x81 or length >= 126:
            raise ConnectionError(f"the WebSocket did not start with hello: {bytes(received[pos:])!r}")
        if len(received) < pos + 2 + length:
            return None
        hello = bytes(received[pos + 3 : pos + 2 + length])
        if received[pos + 2] != 0x1E or json.loads(hello).get("type") != "hello":
            raise ConnectionError(f"the WebSocket did not start with hello: {hello!r}")
        return pos + 2 + length

    def reply(self, control: bytes) -> bytes:
        return pong(control, os.urandom(4)) if control[0] == 0x89 else b""


COMPRESS_FROM = 256
"""
The C{--http-compress} of the daemon that L{DeflateWebSocketWire}'s
subscribers read: messages of 64 B go uncompressed, of 1 KiB compressed.
"""


class DeflateWebSocketWire(WebSocketWire):
    """
    streamd's C{/ws} with C{--http-compress}, as Chromium opens it: it
    offers permessage-deflate, and reads messages compressed or not.
    """

    name = "streamd ws-deflate"
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    serverOptions = ("--http-compress", str(COMPRESS_FROM))

    def records(self, maxLength: int) -> RecordFormat:
        return WebSocketFrames(maxLength, compressed=True)

    def walker(self, maxLength: int, stamped: bool) -> AnyWalker:
        return InflatingWalker(maxLength) if stamped else Walker(self.records(maxLength))


class SseWire(_StreamdVariant):
    """
    streamd's C{/events}, as C{EventSource} reads it: an HTTP/1.1 GET, a
    chunked C{text/event-stream} response starting with C{retry:} and the
    C{hello} event, then one event per message.
    """

    name = "streamd sse"
    listener = "http"

    def walker(self, maxLength: int, stamped: bool) -> AnyWalker:
        return SseWalker(stamped)

    def request(self, subscriber: bool) -> bytes:
        return b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        head = _httpHead(received, b"200")
        if head is None:
            return None
        headers, pos = head
        if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            raise ConnectionError(f"/events answered {headers.get(b'content-type')!r}")
        if headers.get(b"transfer-encoding") != b"chunked":
            raise ConnectionError("/events did not answer with a chunked stream")
        data = bytes(received)
        while (line := data.find(b"\r\n", pos)) >= 0:
            end = line + 2 + int(data[pos:line], 16)
            if len(data) < end + 2:
                return None
            events = data[line + 2 : end].split(b"\n\n")
            if events[-1] or data[end : end + 2] != b"\r\n":
                raise ConnectionError(f"/events sent a chunk that is not whole events: {data[pos:end]!r}")
            if events[-2].startswith(b"event: hello\n"):
                return end + 2
            pos = end + 2
        return None


class TlsWire(_StreamdVariant):
    """
    streamd's int32 frames over TLS, on an C{ssl:} listener: what a
    WebSocket over TLS is measured against.
    """

    name = "streamd tls"
    listener = "tls"
    secure = True

    def records(self, maxLength: int) -> RecordFormat:
        return Int32Records(maxLength)


class SecureWebSocketWire(WebSocketWire):
    """
    streamd's C{/ws} over TLS (C{wss://}), on an C{ssl:} HTTP listener.
    """

    name = "streamd wss"
    listener = "https"
    secure = True
    alsoOver = TlsWire.name


class CountedSseWire(SseWire):
    """
    streamd's C{/events} as L{SseWire}, each connection's events counted by
    a C program (L{bench.ssereader}), so that the subscribers are not the
    bottleneck.
    """

    name = "streamd sse-c"
    countedInC = True


WIRES: dict[str, Wire] = {
    w.name: w
    for w in (
        STREAMD,
        RedisWire(),
        NatsWire(),
        SeqWire(),
        WebSocketWire(),
        DeflateWebSocketWire(),
        TlsWire(),
        SecureWebSocketWire(),
        SseWire(),
        CountedSseWire(),
    )
}
PROTOCOLS = {
    "int32": STREAMD.name,
    "seq": "streamd seq",
    "ws": "streamd ws",
    "ws-deflate": "streamd ws-deflate",
    "sse": "streamd sse",
    "sse-c": "streamd sse-c",
    "tls": TlsWire.name,
    "wss": SecureWebSocketWire.name,
}
"""
The subscriber protocols of C{--protocols}, and their servers' names.
"""
