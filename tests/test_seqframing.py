"""
Tests for L{streamd.seqframing}: every frame type survives a round trip, any
bytes decode to a frame or a clean L{MalformedFrame}, and a history entry's
MSG frames carry consecutive sequence numbers.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from streamd.framing import FRAMINGS
from streamd.seqframing import (
    MSG_OVERHEAD,
    SEQ,
    Auth,
    Bye,
    ClientHello,
    FrameType,
    Gap,
    MalformedFrame,
    Msg,
    Ping,
    Pong,
    Pub,
    ServerHello,
    Unknown,
    decodeClientFrame,
    decodeServerFrame,
    encode,
    framed,
)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
u16 = st.integers(min_value=0, max_value=2**16 - 1)
u8 = st.integers(min_value=0, max_value=255)
epochs = st.binary(min_size=8, max_size=8)
unknownTypes = st.integers(min_value=9, max_value=255)

serverFrames = st.one_of(
    st.builds(ServerHello, u8, epochs, u64, u64, u32),
    st.builds(Msg, u64, st.binary()),
    st.builds(Gap, u64, u64, u16),
    st.builds(Ping),
    st.builds(Bye, u16, st.text()),
    st.builds(Unknown, unknownTypes, st.binary()),
)
clientFrames = st.one_of(
    st.builds(ClientHello, u8, u8, epochs, u64, st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))),
    st.builds(Pub, st.binary()),
    st.builds(Pong),
    st.builds(Auth, st.binary()),
    st.builds(Unknown, unknownTypes, st.binary()),
)


class RoundTripTests(SynchronousTestCase):
    """
    What one end encodes, the other decodes to the same frame.
    """

    @given(serverFrames)
    def test_serverFrames(self, frame: object) -> None:
        """
        Every frame the server sends decodes to itself.
        """
        self.assertEqual(decodeServerFrame(encode(frame)), frame)  # type: ignore[arg-type]

    @given(clientFrames)
    def test_clientFrames(self, frame: object) -> None:
        """
        Every frame a client sends decodes to itself.
        """
        self.assertEqual(decodeClientFrame(encode(frame)), frame)  # type: ignore[arg-type]

    @given(serverFrames, st.binary(min_size=1))
    def test_laterFieldsIgnored(self, frame: object, extra: bytes) -> None:
        """
        Bytes after the fields of a fixed-size frame (a later version's new
        fields) are ignored.
        """
        if isinstance(frame, (ServerHello, Gap, Ping)):
            self.assertEqual(decodeServerFrame(encode(frame) + extra), frame)  # type: ignore[arg-type]

    def test_framedHasLength(self) -> None:
        """
        L{framed} puts the int32 length of the payload first.
        """
        self.assertEqual(framed(Pong()), b"\x00\x00\x00\x01\x07")
        self.assertEqual(framed(Msg(1, b"hi")), b"\x00\x00\x00\x0b\x02" + (1).to_bytes(8, "big") + b"hi")


class HostileBytesTests(SynchronousTestCase):
    """
    Whatever a peer sends, decoding gives a frame or L{MalformedFrame}.
    """

    @given(st.binary())
    def test_anyClientBytes(self, payload: bytes) -> None:
        """
        Any payload from a client decodes or raises L{MalformedFrame}, and
        only a payload too short for a known type raises.
        """
        try:
            decodeClientFrame(payload)
        except MalformedFrame:
            self.assertTrue(not payload or (payload[0] == FrameType.HELLO and len(payload) < 19))

    @given(st.binary())
    def test_anyServerBytes(self, payload: bytes) -> None:
        """
        Any payload from a server decodes or raises L{MalformedFrame}.
        """
        try:
            decodeServerFrame(payload)
        except MalformedFrame:
            self.assertTrue(not payload or payload[0] in (FrameType.HELLO, FrameType.MSG, FrameType.GAP, 5))

    def test_emptyFrame(self) -> None:
        """
        A frame with no type byte is malformed either way.
        """
        self.assertRaises(MalformedFrame, decodeClientFrame, b"")
        self.assertRaises(MalformedFrame, decodeServerFrame, b"")


class SeqFramingTests(SynchronousTestCase):
    """
    L{SEQ} frames a history entry as MSG frames.
    """

    def test_registered(self) -> None:
        """
        C{seq} is a framing name listeners and clients can use.
        """
        self.assertIs(FRAMINGS["seq"], SEQ)

    @given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=2**63), st.data())
    def test_entrySplitAnyhow(self, payloads: list[bytes], first: int, data: st.DataObject) -> None:
        """
        An entry's bytes, split into reads at any points, decode to MSG
        frames numbered from C{first}, each payload once.
        """
        encoded = SEQ.encodeEntry(payloads, first)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=5)))
        decoder = SEQ.decoder(max(map(len, payloads), default=0) + MSG_OVERHEAD)
        got = []
        for start, stop in zip([0, *cuts], [*cuts, len(encoded)], strict=True):
            frames, _ = decoder.feed(encoded[start:stop])
            got.extend(decodeServerFrame(f) for f in frames)
        self.assertIsNone(decoder.error)
        self.assertEqual(got, [Msg(first + i, p) for i, p in enumerate(payloads)])
