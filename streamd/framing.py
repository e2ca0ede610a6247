"""
Wire formats: how a message becomes bytes on a connection and back.

Two framings share one decoder:

- ``int32``: a 4-byte unsigned big-endian length, then the payload
  (what L{twisted.protocols.basic.Int32StringReceiver} speaks).
- ``ascii10``: the classic sockets exercise's header, the payload's length in
  bytes as ASCII decimal, left-aligned and space-padded to 10 characters.

The decoder walks headers itself and keeps a partial large frame as a list of
chunks, so a big frame arriving in many reads costs time proportional to its
size (Twisted's generic parser copies its whole buffer on every read).
"""

from __future__ import annotations

from struct import Struct

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

_INT32 = Struct(">I")


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

    def encodeMany(self, payloads: list[bytes]) -> bytes:
        """
        Several framed messages joined into one byte string.
        """
        header = self.header
        return b"".join([header(len(p)) + p for p in payloads])

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

_NOTHING: tuple[list[bytes], bytes] = ([], b"")


class Decoder:
    """
    Turns one connection's incoming bytes into payloads.

    After a L{FrameError} the decoder stops: L{error} holds it and every later
    call to L{feed} returns nothing.
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
        self._chunks: list[bytes] | None = None
        self._have = 0
        self._need = 0

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """
        Take the next bytes received.

        @return: the payloads completed by C{data}, and the bytes of exactly
            those complete frames as they arrived (ready to relay to peers that
            speak the same framing).
        """
        if self._holding:
            joined = self._join(data)
            if joined is None:
                return _NOTHING
            data = joined
        headerSize = self._headerSize
        unpack = self._unpack
        maxLength = self.maxLength
        payloads: list[bytes] = []
        offset = 0
        end = len(data)
        while end - offset >= headerSize:
            if unpack is not None:
                (length,) = unpack(data, offset)
            else:
                try:
                    length = self._readLength(data, offset)
                except BadHeader as e:
                    return self._stop(e, payloads, data[:offset])
            if length > maxLength:
                return self._stop(FrameTooLong(length, maxLength), payloads, data[:offset])
            stop = offset + headerSize + length
            if stop > end:
                self._holding = True
                self._chunks = [data[offset:]]
                self._have = end - offset
                self._need = headerSize + length
                break
            payloads.append(data[offset + headerSize : stop])
            offset = stop
        else:
            if offset < end:
                self._holding = True
                self._tail = data[offset:]
        return payloads, (data if offset == end else data[:offset])

    def _join(self, data: bytes) -> bytes | None:
        """
        C{data} after the bytes held from earlier reads, or C{None} while a
        large frame is still incomplete (or after an error).
        """
        if self.error is not None:
            return None
        self._holding = False
        if self._chunks is not None:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                self._holding = True
                return None
            data = b"".join(self._chunks)
            self._chunks = None
            return data
        data = self._tail + data
        self._tail = b""
        return data

    def _stop(self, error: FrameError, payloads: list[bytes], raw: bytes) -> tuple[list[bytes], bytes]:
        """
        Stop at a header that is bad or announces too long a frame: keep
        C{error}, hold nothing, and return the frames that came before it.
        """
        self.error = error
        self._holding = True
        self._chunks = None
        self._tail = b""
        return payloads, raw
