"""
The C{seq} protocol's wire format (specified in C{docs/protocol-seq.rst}).

Every frame is an int32 frame (so both ends stay C{Int32StringReceiver}s)
whose payload starts with a one-byte L{FrameType}.  This module only turns
frames into bytes and back; L{streamd.seqserver} and L{streamd.client.seq}
speak the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from struct import Struct
from typing import TypeVar

# The wire carries them: a GAP frame is a Gap, a HELLO asks for a Start.
from streamd.fanout.resume import Gap as Gap
from streamd.fanout.resume import GapReason as GapReason
from streamd.fanout.resume import Start as Start
from streamd.framing import FRAMINGS, INT32, Framing, Int32Framing, Payload

VERSION = 5
"""
The newest version of the protocol this code speaks: 2 adds L{Batch}; 3
adds the largest message to the server's HELLO, and a client's PING that
the server answers with a PONG once it has handled every frame before it;
4 adds named streams (L{Sub}, L{Unsub}, L{SPub}; L{StreamStart},
L{SMsg}, L{SBatch}, L{SGap}, L{Refused}); 5 adds acknowledged publishing
(L{PubN}, L{SPubN}, L{Ack}) and the start SINCE.
"""

ACK_VERSION = 5
"""
The first version whose sessions may number what they publish, and start
at a time.
"""

STREAMS_VERSION = 4
"""
The first version whose sessions may subscribe to named streams; their
every stream message is a frame that says its stream.
"""

BATCH_VERSION = 2
"""
The first version whose sessions may be sent BATCH frames.
"""

PING_VERSION = 3
"""
The first version whose sessions' PINGs the server answers with a PONG.
"""

BATCH_LIMIT = 1024 * 1024
"""
The largest int32 data of a history entry that a server sends as one BATCH
frame; bigger entries go as MSG frames.
"""

EPOCH_SIZE = 8
IDENTITY_SIZE = 8


class FrameType(IntEnum):
    """
    The first byte of every frame's payload.
    """

    HELLO = 1
    MSG = 2
    GAP = 3
    PING = 4
    BYE = 5
    PUB = 6
    PONG = 7
    AUTH = 8
    BATCH = 9
    SUB = 10
    UNSUB = 11
    STREAM = 12
    SBATCH = 13
    SMSG = 14
    SGAP = 15
    SPUB = 16
    REFUSED = 17
    PUBN = 18
    SPUBN = 19
    ACK = 20


class MalformedFrame(Exception):
    """
    A frame whose payload is too short for its type.
    """


@dataclass(frozen=True)
class ServerHello:
    """
    The server's first frame: the version it speaks on this connection, its
    epoch, the oldest and newest sequence numbers of its history (oldest is
    newest + 1 when it holds none), its heartbeat in milliseconds (0:
    none), and (version 3) the largest message it sends or takes (0: not
    said).
    """

    version: int
    epoch: bytes
    oldest: int
    newest: int
    heartbeat: int
    maxMessage: int = 0


@dataclass(frozen=True)
class Msg:
    """
    Message number C{seq} of the stream.
    """

    seq: int
    payload: bytes


@dataclass(frozen=True)
class Batch:
    """
    Messages C{first}, C{first + 1}, ... of the stream, sent together
    (version 2): never none.
    """

    first: int
    payloads: tuple[bytes, ...]


@dataclass(frozen=True)
class Ping:
    """
    Answer with a L{Pong}: sent by the server to a silent client, or
    (version 3) by a client that wants to know the server has handled
    everything it sent before.
    """


@dataclass(frozen=True)
class Bye:
    """
    The server is closing the connection, for the reason C{code}
    (L{streamd.reasons.Reason}), explained by C{text}.
    """

    code: int
    text: str


@dataclass(frozen=True)
class ClientHello:
    """
    The client's request: the newest version it speaks, and where to start
    (L{Start}): after message C{position} of C{epoch}, or the last
    C{position} messages, or from the next one published.

    C{identity}, if not empty, is 8 bytes the client chose once and sends
    on every connection: the messages it published on any of them are not
    sent back to it when it resumes, as they are not live.
    """

    version: int
    start: int
    epoch: bytes
    position: int
    identity: bytes = b""


@dataclass(frozen=True)
class Pub:
    """
    A message the client publishes.
    """

    payload: bytes


@dataclass(frozen=True)
class Pong:
    """
    The answer to a L{Ping}.
    """


@dataclass(frozen=True)
class Auth:
    """
    The client's token.
    """

    token: bytes


@dataclass(frozen=True)
class Position:
    """
    Where a resuming client left the stream C{name}: after message C{seq}
    of C{epoch}.
    """

    name: str
    epoch: bytes
    seq: int


@dataclass(frozen=True)
class Sub:
    """
    (Version 4) Send the stream C{subject}, or every stream the pattern
    C{subject} matches, now and later, from C{start} (L{Start}): the
    newest, the last C{position} messages of each, or (resuming) after
    message C{position} of C{epoch} for a name, after each of
    C{positions} for a pattern, the streams it does not list from their
    oldest message.
    """

    start: int
    subject: str
    epoch: bytes = bytes(8)
    position: int = 0
    positions: tuple[Position, ...] = ()


@dataclass(frozen=True)
class Unsub:
    """
    (Version 4) Stop what the L{Sub} of C{subject} started.
    """

    subject: str


@dataclass(frozen=True)
class SPub:
    """
    (Version 4) A message the client publishes to the stream C{stream}.
    """

    stream: str
    payload: bytes


@dataclass(frozen=True)
class PubN:
    """
    (Version 5) Message C{number} of those the client numbers, for its
    listener's stream: the server acknowledges it with an L{Ack} once it
    is in the log, and takes it only once.
    """

    number: int
    payload: bytes


@dataclass(frozen=True)
class SPubN:
    """
    (Version 5) Message C{number} of those the client numbers, for the
    stream C{stream}.
    """

    number: int
    stream: str
    payload: bytes


@dataclass(frozen=True)
class Ack:
    """
    (Version 5) Every message the client numbered up to C{number} is in
    the log (as C{--fsync} makes it durable); message C{number} is the
    stream's message C{seq} (0: taken on an earlier connection, number not
    kept).
    """

    number: int
    seq: int


@dataclass(frozen=True)
class StreamStart:
    """
    (Version 4) The server's announcement of a stream, before any of its
    messages: its C{number} in the frames that follow (the same on every
    connection while the stream exists), its C{name}, epoch, oldest and
    newest message held, and C{next}, the first message it sends.
    """

    number: int
    name: str
    epoch: bytes
    oldest: int
    newest: int
    next: int


@dataclass(frozen=True)
class SMsg:
    """
    (Version 4) Message number C{seq} of the stream numbered C{stream}.
    """

    stream: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class SBatch:
    """
    (Version 4) Messages C{first}, C{first + 1}, ... of the stream
    numbered C{stream}: never none.
    """

    stream: int
    first: int
    payloads: tuple[bytes, ...]


@dataclass(frozen=True)
class SGap:
    """
    (Version 4) A L{Gap} in the stream numbered C{stream}.
    """

    stream: int
    first: int
    last: int
    reason: int


@dataclass(frozen=True)
class Refused:
    """
    (Version 4) The server refuses the L{Sub} of C{subject}, or a L{SPub}
    to it, because of C{text}; the connection goes on.
    """

    subject: str
    text: str


@dataclass(frozen=True)
class Unknown:
    """
    A frame of a type this version does not know; receivers ignore it.
    """

    type: int
    body: bytes


ServerFrame = (
    ServerHello
    | Msg
    | Batch
    | Gap
    | Ping
    | Pong
    | Bye
    | StreamStart
    | SMsg
    | SBatch
    | SGap
    | Refused
    | Ack
    | Unknown
)
ClientFrame = ClientHello | Pub | Ping | Pong | Auth | Sub | Unsub | SPub | PubN | SPubN | Unknown
_Frame = TypeVar("_Frame")

_LENGTH = Struct(">I")
_SERVER_HELLO = Struct(">BB8sQQI")
_MAX_MESSAGE = Struct(">I")
_MSG = Struct(">BQ")
_MSG_FRAME = Struct(">IBQ")
_BATCH = Struct(">BQ")
_BATCH_FRAME = Struct(">IBQ")
_GAP = Struct(">BQQH")
_BYE = Struct(">BH")
_CLIENT_HELLO = Struct(">BBB8sQ")
_TYPE = Struct(">B")
_SUB = Struct(">BB8sQ")
_POSITION = Struct(">8sQ")
_STREAM = Struct(">BI8sQQQ")
_SMSG = Struct(">BIQ")
_SMSG_FRAME = Struct(">IBIQ")
_SBATCH_FRAME = Struct(">IBIQ")
_SGAP = Struct(">BIQQH")
_PUBN = Struct(">BQ")
_ACK = Struct(">BQQ")

MSG_OVERHEAD = _MSG.size
"""
Bytes a MSG frame's payload has beyond the message.
"""

BATCH_OVERHEAD = _BATCH.size
"""
Bytes a BATCH frame's payload has beyond its messages' int32 frames.
"""

SMSG_OVERHEAD = _SMSG.size
"""
Bytes an SMSG or SBATCH frame's payload has beyond its message(s).
"""

_MSG_TYPE = int(FrameType.MSG)
_BATCH_TYPE = int(FrameType.BATCH)
_SMSG_TYPE = int(FrameType.SMSG)
_SBATCH_TYPE = int(FrameType.SBATCH)


def _short(text: str) -> bytes:
    """
    C{text} (a stream name or pattern) with its one-byte length before it.
    """
    data = text.encode("utf-8")
    if len(data) > 255:
        raise ValueError(f"a name of {len(data)} bytes is too long for a frame (255 at most)")
    return bytes((len(data),)) + data


def encode(frame: ServerFrame | ClientFrame) -> bytes:
    """
    The payload of C{frame} (its int32 frame without the length).
    """
    if isinstance(frame, ServerHello):
        return _SERVER_HELLO.pack(
            FrameType.HELLO, frame.version, frame.epoch, frame.oldest, frame.newest, frame.heartbeat
        ) + _MAX_MESSAGE.pack(frame.maxMessage)
    if isinstance(frame, Msg):
        return _MSG.pack(FrameType.MSG, frame.seq) + frame.payload
    if isinstance(frame, Batch):
        if not frame.payloads:
            raise ValueError("a BATCH holds at least one message")
        return _BATCH.pack(FrameType.BATCH, frame.first) + INT32.encodeMany(frame.payloads)
    if isinstance(frame, Gap):
        return _GAP.pack(FrameType.GAP, frame.first, frame.last, frame.reason)
    if isinstance(frame, Ping):
        return _TYPE.pack(FrameType.PING)
    if isinstance(frame, Bye):
        return _BYE.pack(FrameType.BYE, frame.code) + frame.text.encode("utf-8")
    if isinstance(frame, ClientHello):
        hello = _CLIENT_HELLO.pack(FrameType.HELLO, frame.version, frame.start, frame.epoch, frame.position)
        return hello + frame.identity
    if isinstance(frame, Pub):
        return _TYPE.pack(FrameType.PUB) + frame.payload
    if isinstance(frame, Pong):
        return _TYPE.pack(FrameType.PONG)
    if isinstance(frame, Auth):
        return _TYPE.pack(FrameType.AUTH) + frame.token
    return _encodeStreams(frame)


def _encodeStreams(frame: ServerFrame | ClientFrame) -> bytes:
    """
    The payload of a version 4 C{frame} (or an L{Unknown} one).
    """
    if isinstance(frame, Sub):
        head = _SUB.pack(FrameType.SUB, frame.start, frame.epoch, frame.position) + _short(frame.subject)
        return head + b"".join(_POSITION.pack(p.epoch, p.seq) + _short(p.name) for p in frame.positions)
    if isinstance(frame, Unsub):
        return _TYPE.pack(FrameType.UNSUB) + frame.subject.encode("utf-8")
    if isinstance(frame, SPub):
        return _TYPE.pack(FrameType.SPUB) + _short(frame.stream) + frame.payload
    if isinstance(frame, StreamStart):
        head = _STREAM.pack(
            FrameType.STREAM, frame.number, frame.epoch, frame.oldest, frame.newest, frame.next
        )
        return head + frame.name.encode("utf-8")
    if isinstance(frame, SMsg):
        return _SMSG.pack(FrameType.SMSG, frame.stream, frame.seq) + frame.payload
    if isinstance(frame, SBatch):
        if not frame.payloads:
            raise ValueError("an SBATCH holds at least one message")
        return _SMSG.pack(FrameType.SBATCH, frame.stream, frame.first) + INT32.encodeMany(frame.payloads)
    if isinstance(frame, SGap):
        return _SGAP.pack(FrameType.SGAP, frame.stream, frame.first, frame.last, frame.reason)
    if isinstance(frame, Refused):
        return _TYPE.pack(FrameType.REFUSED) + _short(frame.subject) + frame.text.encode("utf-8")
    if isinstance(frame, PubN):
        return _PUBN.pack(FrameType.PUBN, frame.number) + frame.payload
    if isinstance(frame, SPubN):
        return _PUBN.pack(FrameType.SPUBN, frame.number) + _short(frame.stream) + frame.payload
    if isinstance(frame, Ack):
        return _ACK.pack(FrameType.ACK, frame.number, frame.seq)
    assert isinstance(frame, Unknown)
    return _TYPE.pack(frame.type) + frame.body


def framed(frame: ServerFrame | ClientFrame) -> bytes:
    """
    C{frame} as an int32 frame, ready to send.
    """
    payload = encode(frame)
    return _LENGTH.pack(len(payload)) + payload


def _fields(layout: Struct, payload: Payload) -> tuple[tuple[int | bytes, ...], bytes]:
    """
    The fields of C{layout} at the start of C{payload}, and the bytes after.
    """
    if len(payload) < layout.size:
        raise MalformedFrame(f"a {len(payload)}-byte frame of type {payload[0]} is too short")
    return layout.unpack_from(payload), bytes(payload[layout.size :])


def _fixed(layout: Struct, make: Callable[..., _Frame]) -> Callable[[Payload], _Frame]:
    """
    How to decode a frame of fixed fields after its type: C{make} gets them;
    bytes after them (a later version's new fields) are ignored.
    """
    return lambda payload: make(*_fields(layout, payload)[0][1:])


def _withBody(layout: Struct, make: Callable[..., _Frame]) -> Callable[[Payload], _Frame]:
    """
    How to decode a frame of fixed fields then a body: C{make} gets the
    fields, then the body.
    """

    def decode(payload: Payload) -> _Frame:
        fields, body = _fields(layout, payload)
        return make(*fields[1:], body)

    return decode


def _batch(payload: Payload) -> Batch:
    """
    A BATCH frame: its first sequence number and its messages.
    """
    (_, first), _ = _fields(_BATCH, payload)
    return Batch(first, batchPayloads(payload))  # type: ignore[arg-type]


def _takeShort(payload: Payload, pos: int, what: str) -> tuple[str, int]:
    """
    The name or pattern at C{pos} (after its one-byte length), and where
    it ends.
    """
    if pos >= len(payload) or pos + 1 + payload[pos] > len(payload):
        raise MalformedFrame(f"a frame of type {payload[0]} ends inside its {what}")
    end = pos + 1 + payload[pos]
    return bytes(payload[pos + 1 : end]).decode("utf-8", "replace"), end


def _sub(payload: Payload) -> Sub:
    """
    A SUB frame: where to start, the subject, and the positions after it.
    """
    (_, start, epoch, position), _ = _fields(_SUB, payload)
    subject, pos = _takeShort(payload, _SUB.size, "subject")
    positions = []
    while pos < len(payload):
        if len(payload) - pos < _POSITION.size:
            raise MalformedFrame("a SUB frame ends inside a position")
        known, seq = _POSITION.unpack_from(payload, pos)
        name, pos = _takeShort(payload, pos + _POSITION.size, "position's stream name")
        positions.append(Position(name, known, seq))
    return Sub(start, subject, epoch, position, tuple(positions))  # type: ignore[arg-type]


def _spub(payload: Payload) -> SPub:
    stream, pos = _takeShort(payload, 1, "stream name")
    return SPub(stream, bytes(payload[pos:]))


def _spubn(payload: Payload) -> SPubN:
    (_, number), _ = _fields(_PUBN, payload)
    stream, pos = _takeShort(payload, _PUBN.size, "stream name")
    return SPubN(number, stream, bytes(payload[pos:]))  # type: ignore[arg-type]


def _refused(payload: Payload) -> Refused:
    subject, pos = _takeShort(payload, 1, "subject")
    return Refused(subject, bytes(payload[pos:]).decode("utf-8", "replace"))


def _streamStart(payload: Payload) -> StreamStart:
    (_, number, epoch, oldest, newest, first), name = _fields(_STREAM, payload)
    return StreamStart(number, name.decode("utf-8", "replace"), epoch, oldest, newest, first)  # type: ignore


def _sbatch(payload: Payload) -> SBatch:
    (_, stream, first), _ = _fields(_SMSG, payload)
    return SBatch(stream, first, _messages(payload, _SMSG.size, "an SBATCH"))  # type: ignore[arg-type]


def _serverHello(payload: Payload) -> ServerHello:
    """
    A server's HELLO, with the largest message a version 3 server adds.
    """
    (_, version, epoch, oldest, newest, heartbeat), rest = _fields(_SERVER_HELLO, payload)
    maxMessage = _MAX_MESSAGE.unpack_from(rest)[0] if len(rest) >= _MAX_MESSAGE.size else 0
    return ServerHello(version, epoch, oldest, newest, heartbeat, maxMessage)  # type: ignore[arg-type]


_SERVER_FRAMES: dict[int, Callable[[Payload], ServerFrame]] = {
    FrameType.MSG: _withBody(_MSG, Msg),
    FrameType.BATCH: _batch,
    FrameType.HELLO: _serverHello,
    FrameType.GAP: _fixed(_GAP, Gap),
    FrameType.PING: _fixed(_TYPE, Ping),
    FrameType.PONG: _fixed(_TYPE, Pong),
    FrameType.BYE: _withBody(_BYE, lambda code, text: Bye(code, text.decode("utf-8", "replace"))),
    FrameType.STREAM: _streamStart,
    FrameType.SMSG: _withBody(_SMSG, SMsg),
    FrameType.SBATCH: _sbatch,
    FrameType.SGAP: _fixed(_SGAP, SGap),
    FrameType.REFUSED: _refused,
    FrameType.ACK: _fixed(_ACK, Ack),
}


def _clientHello(payload: Payload) -> ClientHello:
    """
    A client's HELLO, with the identity that may follow its fixed fields.
    """
    (_, version, start, epoch, position), rest = _fields(_CLIENT_HELLO, payload)
    identity = rest[:IDENTITY_SIZE] if len(rest) >= IDENTITY_SIZE else b""
    return ClientHello(version, start, epoch, position, identity)  # type: ignore[arg-type]


_CLIENT_FRAMES: dict[int, Callable[[Payload], ClientFrame]] = {
    FrameType.PUB: _withBody(_TYPE, Pub),
    FrameType.HELLO: _clientHello,
    FrameType.PONG: _fixed(_TYPE, Pong),
    FrameType.PING: _fixed(_TYPE, Ping),
    FrameType.AUTH: _withBody(_TYPE, Auth),
    FrameType.SUB: _sub,
    FrameType.UNSUB: _withBody(_TYPE, lambda subject: Unsub(subject.decode("utf-8", "replace"))),
    FrameType.SPUB: _spub,
    FrameType.PUBN: _withBody(_PUBN, PubN),
    FrameType.SPUBN: _spubn,
}


def _decode(payload: Payload, frames: dict[int, Callable[[Payload], _Frame]]) -> _Frame | Unknown:
    """
    The frame in C{payload}, decoded as C{frames} says for its type, or
    L{Unknown}.

    @raise MalformedFrame: for a payload too short for its type.
    """
    if not payload:
        raise MalformedFrame("an empty frame has no type")
    kind = payload[0]
    decode = frames.get(kind)
    if decode is None:
        return Unknown(kind, bytes(payload[1:]))
    return decode(payload)


def decodeServerFrame(payload: Payload) -> ServerFrame:
    """
    What the server said in one frame's C{payload}.

    @raise MalformedFrame: for a payload too short for its type.
    """
    return _decode(payload, _SERVER_FRAMES)


def batchPayloads(payload: Payload) -> tuple[bytes, ...]:
    """
    The messages of the BATCH frame whose payload is C{payload}.

    @raise MalformedFrame: for a batch with no message, or whose int32
        frames do not end where the payload does.
    """
    return _messages(payload, _BATCH.size, "a BATCH")


def _messages(payload: Payload, pos: int, what: str) -> tuple[bytes, ...]:
    """
    The int32 frames of C{payload} from C{pos} on: the messages of C{what}.
    """
    unpack = _LENGTH.unpack_from
    end = len(payload)
    if pos >= end:
        raise MalformedFrame(f"{what} frame holds no message")
    messages: list[bytes] = []
    append = messages.append
    while pos < end:
        if end - pos < 4:
            raise MalformedFrame(f"{what} frame ends in a {end - pos}-byte length")
        (length,) = unpack(payload, pos)
        pos += 4
        if pos + length > end:
            raise MalformedFrame(f"{what} frame ends inside a {length}-byte message")
        append(bytes(payload[pos : pos + length]))
        pos += length
    return tuple(messages)


def decodeClientFrame(payload: Payload) -> ClientFrame:
    """
    What a client said in one frame's C{payload}.

    @raise MalformedFrame: for a payload too short for its type.
    """
    return _decode(payload, _CLIENT_FRAMES)


class SeqFraming(Int32Framing):
    """
    The framing of C{seq} listeners: int32 frames, the stream's messages
    sent as MSG frames carrying their sequence numbers.

    Only L{encodeEntry} makes MSG frames (a history entry at once, cached
    and shared by every seq subscriber of version 1); the other frames are
    made with L{framed}.
    """

    name = "seq"

    def encodeEntry(self, payloads: Sequence[Payload], first: int) -> bytes:
        pack = _MSG_FRAME.pack
        msg = _MSG_TYPE
        parts: list[Payload] = []
        append = parts.append
        for seq, payload in enumerate(payloads, first):
            append(pack(len(payload) + MSG_OVERHEAD, msg, seq))
            append(payload)
        return b"".join(parts)


class SeqBatchFraming(SeqFraming):
    """
    How the stream is sent to C{seq} clients of version 2 or later: an
    entry that came in int32 framing, of at most L{BATCH_LIMIT} bytes, is
    one BATCH frame, its bytes as they came in after a 13-byte header (no
    work per message); any other entry is MSG frames, as for version 1.
    """

    def reframe(
        self, data: bytes, dataFraming: Framing, first: int, payloads: Sequence[Payload] | None = None
    ) -> bytes | None:
        if dataFraming is not INT32 or not 0 < len(data) <= BATCH_LIMIT:
            return None
        return _BATCH_FRAME.pack(len(data) + BATCH_OVERHEAD, _BATCH_TYPE, first) + data


SEQ = SeqFraming()
FRAMINGS[SEQ.name] = SEQ
SEQ_BATCH = SeqBatchFraming()
"""
The framing of the cursors of version 2 sessions; not a listener's framing
(the listener's is L{SEQ}), so not in L{FRAMINGS}.
"""


class StreamFraming(SeqFraming):
    """
    How the stream numbered C{number} is sent to C{seq} clients of version
    4: an entry that came in int32 framing, of at most L{BATCH_LIMIT}
    bytes, is one SBATCH frame, its bytes as they came in after a 17-byte
    header; any other entry is SMSG frames.  One per stream, shared by all
    its version 4 subscribers (the history makes each entry's frames once).
    """

    def __init__(self, number: int) -> None:
        self.number = number

    def encodeEntry(self, payloads: Sequence[Payload], first: int) -> bytes:
        pack = _SMSG_FRAME.pack
        kind, number = _SMSG_TYPE, self.number
        parts: list[Payload] = []
        append = parts.append
        for seq, payload in enumerate(payloads, first):
            append(pack(len(payload) + SMSG_OVERHEAD, kind, number, seq))
            append(payload)
        return b"".join(parts)

    def reframe(
        self, data: bytes, dataFraming: Framing, first: int, payloads: Sequence[Payload] | None = None
    ) -> bytes | None:
        if dataFraming is not INT32 or not 0 < len(data) <= BATCH_LIMIT:
            return None
        return _SBATCH_FRAME.pack(len(data) + SMSG_OVERHEAD, _SBATCH_TYPE, self.number, first) + data
