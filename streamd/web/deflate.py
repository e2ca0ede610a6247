"""
permessage-deflate (RFC 7692) for the WebSocket clients that negotiate it,
with C{--http-compress}: which offers are accepted, stream messages
compressed once for every such client, and what they send inflated within
the daemon's limits.

The daemon compresses each message on its own, with no context takeover,
so a message's compressed form is the same for every client: a framing of
its own (L{DeflateWebSocketFraming}, one per stream and kind of client, as
the other framings) makes an entry's frames once, and the history keeps
them for all its subscribers, as nchan shares its compressed messages.
Messages shorter than the threshold, longer than L{LIMIT}, or that deflate
does not make shorter go as they are: RSV1 is set per message.  The
daemon's own control messages, pings, pongs and close frames are never
compressed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

from streamd.fanout.hub import Hub
from streamd.framing import Framing, Payload
from streamd.web.framing import StreamWebSocketFraming, WebSocketFraming, firstByte, frameHeader

WINDOW_BITS = 15
"""
The window the daemon compresses with, and so the only C{server_max_window_bits}
it can grant: the one compressed form must suit every client, and a client
that asks for a smaller window gets its stream uncompressed.
"""

LEVEL = 6
"""
zlib's level for messages of up to L{LARGE} bytes (zlib's default): a
1 KiB JSON message in about 7 us.
"""

LARGE = 64 * 1024
LARGE_LEVEL = 1
"""
zlib's level for messages over L{LARGE} bytes: about three times faster than
L{LEVEL} for a ratio a quarter worse.
"""

LIMIT = 1024 * 1024
"""
Messages longer than this go uncompressed: compressing is done on the
reactor, about 8 ms a MiB of JSON at L{LARGE_LEVEL}, and a longer message
would hold up every other client for longer than that.
"""

RSV1 = 0x40
"""
The bit of a message's first frame that says it is compressed.
"""

_TAIL = b"\x00\x00\xff\xff"
"""
The empty stored block a flush ends with, which RFC 7692 has the sender
leave out and the receiver put back.
"""


class Deflater:
    """
    Compresses messages one at a time, each on its own (a full flush after
    each resets the compressor, so that none refers to another): one for the
    whole daemon, since the reactor compresses one message at a time, and
    a compressor holds a few hundred KiB.

    @ivar threshold: the shortest message compressed (C{--http-compress}).
    @ivar messages: messages compressed so far.
    @ivar bytesIn: their bytes.
    @ivar bytesOut: the bytes they were compressed to, including those of
        messages then sent as they were.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._small = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS)
        self._large = zlib.compressobj(LARGE_LEVEL, zlib.DEFLATED, -WINDOW_BITS)
        self.messages = 0
        self.bytesIn = 0
        self.bytesOut = 0

    def compress(self, data: bytes) -> bytes | None:
        """
        C{data} compressed as a message's payload (RFC 7692's, without the
        flush's tail), or C{None} when it goes as it is: shorter than the
        threshold, longer than L{LIMIT}, or not made shorter.
        """
        size = len(data)
        if size < self.threshold or size > LIMIT:
            return None
        compressor = self._small if size <= LARGE else self._large
        compressed = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
        self.messages += 1
        self.bytesIn += size
        self.bytesOut += len(compressed) - len(_TAIL)
        return compressed[: -len(_TAIL)] if len(compressed) - len(_TAIL) < size else None

    def frame(self, payload: Payload) -> bytes:
        """
        One stream message as one final frame, compressed (RSV1 set) when
        L{compress} says so.
        """
        data = bytes(payload)
        compressed = self.compress(data)
        if compressed is None:
            return frameHeader(firstByte(data), len(data)) + data
        return frameHeader(firstByte(data) | RSV1, len(compressed)) + compressed


class _Deflating(WebSocketFraming):
    """
    Stream messages framed by a L{Deflater}.
    """

    name = "websocket-deflate"
    deflater: Deflater

    def encode(self, payload: bytes) -> bytes:
        return self.deflater.frame(payload)

    def encodeMany(self, payloads: Sequence[Payload]) -> bytes:
        frame = self.deflater.frame
        return b"".join([frame(p) for p in payloads])

    def reframe(
        self, data: bytes, dataFraming: Framing, first: int, payloads: Sequence[Payload] | None = None
    ) -> bytes | None:
        # Each message is compressed on its own: never the plain frames.
        return None


class DeflateWebSocketFraming(_Deflating):
    """
    A stream as compressed WebSocket frames, for the clients of C{/ws}
    that negotiated permessage-deflate.
    """

    def __init__(self, deflater: Deflater) -> None:
        self.deflater = deflater


class DeflateStreamWebSocketFraming(_Deflating, StreamWebSocketFraming):
    """
    The stream C{stream} as compressed WebSocket frames for the clients of
    several streams that negotiated permessage-deflate (each entry after an
    C{in} control message, which is not compressed).
    """

    def __init__(self, stream: str, deflater: Deflater) -> None:
        super().__init__(stream)
        self.deflater = deflater


def streamFraming(hub: Hub, deflater: Deflater) -> DeflateWebSocketFraming:
    """
    C{hub}'s compressed framing for the clients of C{/ws}: one per stream,
    whose encodings its history keeps.
    """
    framing = hub.framing(DeflateWebSocketFraming, lambda: DeflateWebSocketFraming(deflater))
    assert isinstance(framing, DeflateWebSocketFraming)
    return framing


def namedStreamFraming(hub: Hub, deflater: Deflater) -> DeflateStreamWebSocketFraming:
    """
    C{hub}'s compressed framing for clients of several streams.
    """
    framing = hub.framing(
        DeflateStreamWebSocketFraming, lambda: DeflateStreamWebSocketFraming(hub.name, deflater)
    )
    assert isinstance(framing, DeflateStreamWebSocketFraming)
    return framing


class _NoContextTakeover(PerMessageDeflateOfferAccept):  # type: ignore[misc]
    """
    autobahn's acceptance of an offer, which also tells the client that the
    server takes no context over when it did not ask (RFC 7692, 7.1.1.1,
    lets a server say so), so that it need keep none between messages.
    """

    def get_extension_string(self) -> str:
        accepted: str = super().get_extension_string()
        if self.offer.request_no_context_takeover:
            return accepted
        return accepted + "; server_no_context_takeover"


def acceptOffer(offers: Sequence[Any]) -> PerMessageDeflateOfferAccept | None:
    """
    The acceptance of the first of a client's offers (autobahn's
    C{perMessageCompressionAccept}) that the daemon can serve: a
    permessage-deflate one that leaves the server its L{WINDOW_BITS}-bit
    window; the client is asked to take no context over either, so that
    what it sends is inflated message by message, with nothing kept
    between.  C{None} (the stream goes uncompressed) when none is.
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer) and offer.request_max_window_bits in (0, WINDOW_BITS):
            return _NoContextTakeover(
                offer, request_no_context_takeover=offer.accept_no_context_takeover, no_context_takeover=True
            )
    return None


class Inflater:
    """
    What a client sends, inflated within C{--max-message-size}: each call
    inflates at most what is left of the limit and one byte more, so that a
    small frame that would inflate to gigabytes (a zip bomb) costs no more
    than the limit before the client is cut.

    It stands in for autobahn's own inflating (its
    C{PerMessageDeflate}'s three receiving methods), which bounds nothing
    in autobahn's older releases and raises on a broken stream; this one
    never raises: it tells C{failed} why, once, and gives nothing more of
    that message.
    """

    EXTENSION_NAME = "permessage-deflate"

    def __init__(self, windowBits: int, keepContext: bool, limit: int, failed: Callable[[str], None]) -> None:
        self._windowBits = windowBits
        self._keepContext = keepContext
        self._limit = limit
        self._failed = failed
        self._inflate: Any = None
        self._size = 0
        self._broken = False

    @classmethod
    def negotiated(cls, extension: Any, limit: int, failed: Callable[[str], None]) -> Inflater:
        """
        The inflater of what autobahn's C{extension} (a C{PerMessageDeflate})
        negotiated with a client.
        """
        return cls(extension.client_max_window_bits, not extension.client_no_context_takeover, limit, failed)

    def start_decompress_message(self) -> None:
        if self._inflate is None or not self._keepContext:
            self._inflate = zlib.decompressobj(-self._windowBits)
        self._size = 0
        self._broken = False

    def decompress_message_data(self, data: bytes, max_output_len: int | None = None) -> bytes:
        """
        The next piece of the message, inflated; C{b""} once it is broken or
        over the limit.  (autobahn's newer releases pass their own bound,
        C{max_output_len}, which is the same.)
        """
        if self._broken:
            return b""
        room = self._limit - self._size
        try:
            inflated: bytes = self._inflate.decompress(data, room + 1)
        except zlib.error as e:
            self._fail(f"sent a compressed message that does not inflate ({e})")
            return b""
        self._size += len(inflated)
        if self._size > self._limit:
            self._fail(f"sent a compressed message that inflates past the {self._limit}-byte limit")
            return b""
        return inflated

    def end_decompress_message(self) -> None:
        if not self._broken:
            try:
                self._inflate.decompress(_TAIL)
            except zlib.error as e:
                self._fail(f"sent a compressed message that does not inflate ({e})")
        if not self._keepContext:
            self._inflate = None

    def _fail(self, why: str) -> None:
        self._broken = True
        self._inflate = None
        self._failed(why)
