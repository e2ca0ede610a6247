"""
Wire formats: how a message becomes bytes on a connection and back.

Two framings share one decoder:

  - C{int32}: a 4-byte unsigned big-endian length, then the payload
    (what C{twisted.protocols.basic.Int32StringReceiver} speaks).
  - C{ascii10}: the classic sockets exercise's header, the payload's length in
    bytes as ASCII decimal, left-aligned and space-padded to 10 characters.

The decoder walks headers itself and keeps a partial large frame as a list of
chunks, so a big frame arriving in many reads costs time proportional to its
size (Twisted's generic parser copies its whole buffer on every read). Such a
frame is joined once, and its payload is a view into the joined bytes, not a
second copy.  Reads shorter than L{COALESCE_BELOW} are copied into
C{bytearray}s of up to L{SEAL_AT} bytes instead of being kept each as its
own object, so that however a frame is split the memory held for it stays
within about 1.15 times the bytes received of it plus a few hundred bytes
(L{Decoder.held}), and the process's memory follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from struct import Struct
from sys import getsizeof

from streamd.reads import SMALL_READ

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

COALESCE_BELOW = 4096
"""
Reads of a split frame shorter than this are copied into a C{bytearray};
longer ones are kept as they came.  Kept whole, a 1-byte read costs about 42
bytes (its C{bytes} object and its place in the list); a read of this size
or more costs at most 1% over its length.
"""

SEAL_AT = 64 * 1024
"""
A C{bytearray} that gathers small reads is sealed once it holds this much,
and the next read starts another: one that grew to the whole frame would be
copied into ever larger blocks as it grew, and the blocks it left behind
would hold the process's memory at about twice the frame.
"""

VIEW_FROM = 512
"""
Payloads of at least this many bytes that arrive whole in one read are
views of the read rather than copies: the daemon relays the read's bytes as
they came and only counts the payloads, so copying them is wasted.  Below
512 bytes a copy comes from Python's small-object allocator and costs less
than a view; from 512 on it is a C{malloc} and a copy, and a view costs less
(under callgrind, in C{bench/publishpath.py}: 6% fewer instructions a
message at 1 KiB, 3% at 512 B, 9% more at 300 B; see docs/benchmarks.rst).
"""

_INT32 = Struct(">I")

Payload = bytes | memoryview
"""
A decoded message: C{bytes}, or a C{memoryview} into the joined bytes for a
message whose payload did not all come in the read that brought its header,
or into the read for one of L{VIEW_FROM} bytes or more.
"""


class FrameError(Exception):
    """
    A peer sent bytes that cannot be a frame; the connection is unusable.
    """


class FrameTooLong(FrameError):
    """
    A peer announced a frame longer than the configured limit.
    """

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"announced a {length}-byte frame, over the {limit}-byte limit")
        self.length = length
        self.limit = limit


class BadHeader(FrameError):
    """
    A length header that the framing cannot parse.
    """


class Framing:
    """
    One wire format: a fixed-size length header followed by the payload.
    """

    name: str
    headerSize: int
    maxLength: int
    # A binary header that a Struct reads in one C call, for the decoder's
    # hot loop; None means "ask readLength".
    headerStruct: Struct | None = None

    def header(self, length: int) -> bytes:
        """
        The header announcing a payload of C{length} bytes.
        """
        raise NotImplementedError

    def readLength(self, data: bytes, offset: int) -> int:
        """
        The length announced by the header at C{offset} of C{data}.

        @raise BadHeader: if those bytes are not a valid header.
        """
        raise NotImplementedError

    def encode(self, payload: bytes) -> bytes:
        """
        One framed message.
        """
        return self.header(len(payload)) + payload

    def encodeMany(self, payloads: Sequence[Payload]) -> bytes:
        """
        Several framed messages joined into one byte string.
        """
        header = self.header
        return b"".join([header(len(p)) + p for p in payloads])

    def encodeEntry(self, payloads: Sequence[Payload], first: int) -> bytes:
        """
        A history entry's messages, the first of which has sequence number
        C{first}, joined into one byte string; framings that carry sequence
        numbers use C{first}, the others ignore it.
        """
        return self.encodeMany(payloads)

    def reframe(
        self, data: bytes, dataFraming: Framing, first: int, payloads: Sequence[Payload] | None = None
    ) -> bytes | None:
        """
        A history entry's messages, the first of which has sequence number
        C{first}, encoded straight from their bytes C{data} as framed with
        C{dataFraming} (and C{payloads}, the messages, if the caller has
        them); or C{None} when this framing cannot do that, and
        L{encodeEntry} must be given the messages one by one.
        """
        return None

    def split(self, data: bytes, count: int) -> list[Payload]:
        """
        The C{count} messages framed as C{data}: bytes this framing made or
        checked before (a history entry's), so not checked again.
        """
        payloads, _ = self.decoder(self.maxLength).feed(data)
        return payloads

    def decoder(self, maxLength: int) -> Decoder:
        """
        A fresh decoder for one connection's incoming bytes.
        """
        return Decoder(self, maxLength)


class Int32Framing(Framing):
    """
    4-byte unsigned big-endian length prefix.
    """

    name = "int32"
    headerSize = 4
    maxLength = 0xFFFFFFFF
    headerStruct = _INT32

    def header(self, length: int) -> bytes:
        if length > self.maxLength:
            raise ValueError(f"a {length}-byte message does not fit the int32 framing")
        return _INT32.pack(length)

    def readLength(self, data: bytes, offset: int) -> int:
        length: int = _INT32.unpack_from(data, offset)[0]
        return length

    def split(self, data: bytes, count: int) -> list[Payload]:
        # The messages of a fixed-size feed all have the first's header: cut
        # at C speed once that is checked, as the decoder's runs are.
        payloads: list[Payload] = []
        if count >= RUN_WINDOW:
            length = _INT32.unpack_from(data)[0]
            stride = 4 + length
            if stride * count == len(data) and _sameHeaders(data, 0, data[:4], stride, count) == count:
                _cutPayloads(data, 0, len(data), 4, length, payloads)
                return payloads
        # A tight loop, about twice as fast as the general decoder.
        unpack = _INT32.unpack_from
        append = payloads.append
        end = 0
        for _ in range(count):
            start = end + 4
            end = start + unpack(data, end)[0]
            append(data[start:end])
        return payloads


class ASCII10Framing(Framing):
    """
    10-character, left-aligned, space-padded ASCII decimal length prefix.
    """

    name = "ascii10"
    headerSize = 10
    maxLength = 9_999_999_999

    def header(self, length: int) -> bytes:
        if length > self.maxLength:
            raise ValueError(f"a {length}-byte message does not fit the ascii10 framing")
        return b"%-10d" % (length,)

    def readLength(self, data: bytes, offset: int) -> int:
        raw = data[offset : offset + 10]
        digits = raw.rstrip(b" ")
        if not digits.isdigit():
            raise BadHeader(f"sent {raw!r}, which is not a 10-character decimal length header")
        return int(digits)


INT32 = Int32Framing()
ASCII10 = ASCII10Framing()
FRAMINGS: dict[str, Framing] = {f.name: f for f in (INT32, ASCII10)}

RUN_WINDOW = 16
"""
When the first frame of a read (or the first after a run of at least this
many) is followed by one with the same header, and at least this many of
its length would fit in what is left of the read, the decoder looks at
this many for more with that header, then twice as many each time all had
it, up to L{MAX_RUN_WINDOW}: a publisher's burst is mostly frames of one
size, whose headers are then checked together at C speed
(L{_sameHeaders}) and whose payloads are cut out in C (L{_cutPayloads}),
rather than parsed one by one.  The first frame whose header differs ends
the run; it and the frames after it are parsed one by one, and looked at
as the start of a run again only after a long one.  So traffic of mixed
sizes costs a comparison of two headers a read, and at most one look that
finds a short run; shorter reads are parsed one by one.
"""

MAX_RUN_WINDOW = 4096

CUT_GROUP = 64
"""
Payloads copied out of a run by one C{struct} unpack: a run of frames under
L{VIEW_FROM} is cut a group at a time in C, with no Python work a message
(about a quarter of a comprehension's time at 64 bytes, in C{timeit}).
"""


@lru_cache(maxsize=256)
def _runStructs(headerSize: int, length: int) -> tuple[Struct, Struct]:
    """
    The structs that skip a header of C{headerSize} bytes and copy a payload
    of C{length}: for L{CUT_GROUP} frames at once, and for one.
    """
    one = f"{headerSize}x{length}s"
    return Struct(one * CUT_GROUP), Struct(one)


def _cutPayloads(data: bytes, start: int, stop: int, headerSize: int, length: int, payloads: list[Payload]) -> None:
    """
    Append to C{payloads} those of the frames from C{start} to C{stop} of
    C{data}, each a header of C{headerSize} bytes and a payload of
    C{length}: copies made a group at a time in C under L{VIEW_FROM}, views
    from it on.
    """
    view = memoryview(data)
    if length < VIEW_FROM:
        group, one = _runStructs(headerSize, length)
        stride = (headerSize + length) * CUT_GROUP
        grouped = start + (stop - start) // stride * stride
        payloads += chain.from_iterable(group.iter_unpack(view[start:grouped]))
        payloads += chain.from_iterable(one.iter_unpack(view[grouped:stop]))
    else:
        payloads += [view[at : at + length] for at in range(start + headerSize, stop, headerSize + length)]


def _sameHeaders(data: bytes, offset: int, header: bytes, stride: int, count: int) -> int:
    """
    How many of the C{count} frames of C{stride} bytes at C{offset} of
    C{data} (all within it) have, one after another, the bytes of
    C{header}, and so its length: each byte position of the headers is
    taken as one strided slice and compared with that byte of C{header}.
    """
    last = offset + count * stride
    run = count
    for index in range(len(header)):
        byte = header[index : index + 1]
        column = data[offset + index : last : stride]
        if column != byte * count:
            same = count - len(column.lstrip(byte))
            if same < run:
                run = same
    return run


class Decoder:
    """
    Turns one connection's incoming bytes into payloads.

    After a L{FrameError} the decoder stops: L{error} holds it and every later
    call to L{feed} returns nothing.

    @ivar held: the memory, in bytes, of what the decoder holds for the frame
        it has begun and not finished: the C{sys.getsizeof} of each object it
        keeps for it (0 when it holds nothing).  However the frame is split,
        this stays within about 1.15 times the bytes received of it, plus a
        few hundred bytes.
    """

    def __init__(self, framing: Framing, maxLength: int) -> None:
        self.framing = framing
        self.maxLength = maxLength
        self.error: FrameError | None = None
        self._headerSize = framing.headerSize
        self._unpack = framing.headerStruct.unpack_from if framing.headerStruct is not None else None
        self._readLength = framing.readLength
        # Whether feed must first join new bytes to held ones (or refuse
        # them, after an error): false in the common case of reads that
        # end on a frame boundary.
        self._holding = False
        self._tail = b""
        self._chunks: list[bytes | bytearray | memoryview] | None = None
        # What the chunks before the last one cost (sys.getsizeof).
        self._sealed = 0
        self._have = 0
        self._need = 0
        self.held = 0

    def feed(self, data: bytes) -> tuple[list[Payload], bytes]:
        """
        Take the next bytes received.

        @return: the payloads completed by C{data} (see L{Payload}), and the
            bytes of exactly those complete frames as they arrived (ready to
            relay to peers that speak the same framing).
        """
        if self._holding:
            chunks = self._chunks
            if chunks is not None:
                return self._continueFrame(chunks, data)
            if self.error is not None:
                return [], b""
            self._holding = False
            data = self._tail + data
            self._tail = b""
            self.held = 0
        payloads: list[Payload] = []
        offset = self._parse(data, 0, payloads)
        return payloads, (data if offset == len(data) else data[:offset])

    def _parse(self, data: bytes, offset: int, payloads: list[Payload]) -> int:
        """
        Append the payloads of the complete frames in C{data} from C{offset}
        to C{payloads}, hold what follows them, and return where they end.
        """
        headerSize = self._headerSize
        unpack = self._unpack
        maxLength = self.maxLength
        end = len(data)
        view = None
        # Whether this frame may begin a run: the first, and the first after
        # a run of at least RUN_WINDOW frames.
        runMayStart = True
        while end - offset >= headerSize:
            if unpack is not None:
                (length,) = unpack(data, offset)
            else:
                try:
                    length = self._readLength(data, offset)
                except BadHeader as e:
                    self._stop(e, data[offset:])
                    return offset
            if length > maxLength:
                self._stop(FrameTooLong(length, maxLength), data[offset:])
                return offset
            stop = offset + headerSize + length
            if stop > end:
                self._holding = True
                chunks = self._chunks = [data[offset:]]
                self._sealed = 0
                self._have = end - offset
                self._need = headerSize + length
                self.held = getsizeof(chunks[0]) + getsizeof(chunks)
                return offset
            if runMayStart:
                runMayStart = False
                stride = headerSize + length
                if (end - offset) // stride >= RUN_WINDOW and data[stop : stop + headerSize] == data[offset : stop - length]:
                    last = self._cutRun(data, offset, length, payloads)
                    runMayStart = last - offset >= RUN_WINDOW * stride
                    offset = last
                    continue
            if length < VIEW_FROM:
                payloads.append(data[offset + headerSize : stop])
            else:
                if view is None:
                    view = memoryview(data)
                payloads.append(view[offset + headerSize : stop])
            offset = stop
        if offset < end:
            self._holding = True
            self._tail = data[offset:]
            self.held = getsizeof(self._tail)
        return offset

    def _cutRun(self, data: bytes, offset: int, length: int, payloads: list[Payload]) -> int:
        """
        Append the payloads of the frames from C{offset} on that have the
        header of the first (a complete frame of C{length} bytes) and are
        all within C{data}, looked at L{RUN_WINDOW} at a time, then twice as
        many each time all were, up to L{MAX_RUN_WINDOW}; return where they
        end.
        """
        headerSize = self._headerSize
        stride = headerSize + length
        header = data[offset : offset + headerSize]
        end = len(data)
        start = offset
        window = RUN_WINDOW
        while (count := min((end - offset) // stride, window)) > 0:
            run = _sameHeaders(data, offset, header, stride, count)
            offset += run * stride
            if run < count:
                break
            window = min(window * 2, MAX_RUN_WINDOW)
        _cutPayloads(data, start, offset, headerSize, length, payloads)
        return offset

    def _continueFrame(
        self, chunks: list[bytes | bytearray | memoryview], data: bytes
    ) -> tuple[list[Payload], bytes]:
        """
        Add C{data} to the frame that spans reads.  Once it is complete, join
        it with the complete frames after it in C{data}: that join is the only
        copy of it (and of every read kept whole), and its payload is a view
        of the join.
        """
        size = len(data)
        self._have += size
        beyond = self._have - self._need
        if beyond < 0:
            last = chunks[-1]
            if size >= COALESCE_BELOW:
                self._sealed += getsizeof(last)
                chunks.append(data)
            elif isinstance(last, bytearray) and len(last) < SEAL_AT:
                last += data
            else:
                self._sealed += getsizeof(last)
                chunks.append(bytearray(data))
            self.held = self._sealed + getsizeof(chunks[-1]) + getsizeof(chunks)
            return [], b""
        chunks.append(data)
        need = self._need
        self._holding = False
        self._chunks = None
        self.held = 0
        following: list[Payload] = []
        offset = self._parse(data, len(data) - beyond, following)
        if offset < len(data):
            chunks[-1] = memoryview(data)[:offset]
        raw = b"".join(chunks)
        return [memoryview(raw)[self._headerSize : need], *following], raw

    def readSize(self, target: int) -> int:
        """
        How many bytes to read next, about C{target}, so that the read ends
        where a frame does if the frames to come are the size of the last
        one that spanned reads: the rest of the frame begun and the number
        of whole ones that comes nearest to C{target} (so at most half a
        frame over it; rounding down would make a feed of 64 KiB frames
        read 192 KiB at a time, and send a quarter more often).  A
        fixed-size feed's reads then end on frames and are never joined.
        C{target} when no such size is known or it would be under
        L{SMALL_READ}, Twisted's own read size (a frame that cannot end a
        read that big is one of hundreds of KiB, and its reads are joined
        whatever their sizes).
        """
        stride = self._need
        if self._chunks is not None:
            rest = stride - self._have
        elif self._holding or not stride:
            return target
        else:
            rest = 0
        size = rest + (target - rest + stride // 2) // stride * stride
        return size if SMALL_READ <= size <= target + stride // 2 else target

    def unprocessed(self) -> bytes:
        """
        The bytes received and not given out as frames: those of the frame
        begun, or after an error, those from the bad header on.
        """
        if self._chunks is not None:
            return b"".join(self._chunks)
        return self._tail

    def discard(self) -> None:
        """
        Drop the unfinished frame, if any, at once: its connection is gone or
        being cut, and the protocol that holds this decoder may live on until
        the garbage collector finds it.
        """
        self._chunks = None
        self._tail = b""
        self._holding = self.error is not None
        self.held = 0

    def _stop(self, error: FrameError, rest: bytes) -> None:
        """
        Stop at a header that is bad or announces too long a frame: keep
        C{error}, and until L{discard} the C{rest} of the read from that
        header on, for L{unprocessed}.
        """
        self.error = error
        self._holding = True
        self._chunks = None
        self._tail = rest
        self.held = 0
