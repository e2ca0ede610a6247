"""
Tests for L{streamd.seqframing}: every frame type survives a round trip, any
bytes decode to a frame or a clean L{MalformedFrame}, and a history entry's
MSG frames, or its BATCH frame, carry consecutive sequence numbers.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from streamd.fanout.history import History
from streamd.framing import ASCII10, FRAMINGS, INT32
from streamd.seqframing import (
    BATCH_LIMIT,
    BATCH_OVERHEAD,
    MSG_OVERHEAD,
    SEQ,
    SEQ_BATCH,
    Ack,
    Auth,
    Batch,
    Bye,
    ClientHello,
    FrameType,
    Gap,
    MalformedFrame,
    Msg,
    Ping,
    Pong,
    Position,
    Pub,
    PubN,
    Refused,
    SBatch,
    ServerHello,
    SGap,
    SMsg,
    SPub,
    SPubN,
    StreamStart,
    Sub,
    Unknown,
    Unsub,
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
unknownTypes = st.integers(min_value=21, max_value=255)
names = st.from_regex(r"[A-Za-z0-9_-]{1,12}(\.[A-Za-z0-9_-]{1,12}){0,3}", fullmatch=True)
subjects = st.one_of(names, names.map(lambda name: name + ".>"), names.map(lambda name: "*." + name))
payloadLists = st.lists(st.binary(max_size=300), min_size=1, max_size=20)

serverFrames = st.one_of(
    st.builds(ServerHello, u8, epochs, u64, u64, u32),
    st.builds(Msg, u64, st.binary()),
    st.builds(Batch, u64, payloadLists.map(tuple)),
    st.builds(Gap, u64, u64, u16),
    st.builds(Ping),
    st.builds(Bye, u16, st.text()),
    st.builds(StreamStart, u32, names, epochs, u64, u64, u64),
    st.builds(SMsg, u32, u64, st.binary()),
    st.builds(SBatch, u32, u64, payloadLists.map(tuple)),
    st.builds(SGap, u32, u64, u64, u16),
    st.builds(Refused, subjects, st.text()),
    st.builds(Ack, u64, u64),
    st.builds(Unknown, unknownTypes, st.binary()),
)
clientFrames = st.one_of(
    st.builds(ClientHello, u8, u8, epochs, u64, st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))),
    st.builds(Pub, st.binary()),
    st.builds(Pong),
    st.builds(Auth, st.binary()),
    st.builds(
        Sub,
        u8,
        subjects,
        epochs,
        u64,
        st.lists(st.builds(Position, names, epochs, u64), max_size=4).map(tuple),
    ),
    st.builds(Unsub, subjects),
    st.builds(SPub, names, st.binary()),
    st.builds(PubN, u64, st.binary()),
    st.builds(SPubN, u64, names, st.binary()),
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

    def test_batchLayout(self) -> None:
        """
        A BATCH is its type, the u64 sequence of its first message, then its
        messages as int32 frames.
        """
        self.assertEqual(
            encode(Batch(7, (b"a", b"bc"))),
            b"\x09" + (7).to_bytes(8, "big") + b"\x00\x00\x00\x01a\x00\x00\x00\x02bc",
        )

    def test_emptyBatch(self) -> None:
        """
        A BATCH of no message can neither be encoded nor decoded.
        """
        self.assertRaises(ValueError, encode, Batch(1, ()))
        self.assertRaises(MalformedFrame, decodeServerFrame, b"\x09" + bytes(8))

    @given(payloadLists, st.data())
    def test_truncatedBatch(self, payloads: list[bytes], data: st.DataObject) -> None:
        """
        A BATCH whose last int32 frame is cut short is malformed.
        """
        whole = encode(Batch(1, tuple(payloads)))
        cut = data.draw(st.integers(1, 3 + len(payloads[-1])))
        self.assertRaises(MalformedFrame, decodeServerFrame, whole[:-cut])


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
            short = {FrameType.HELLO: 19, FrameType.SUB: 19, FrameType.PUBN: 9}
            self.assertTrue(
                not payload
                or (payload[0] in short and len(payload) < short[payload[0]])
                or payload[0] in (FrameType.SUB, FrameType.SPUB, FrameType.SPUBN)
            )

    @given(st.binary())
    def test_anyServerBytes(self, payload: bytes) -> None:
        """
        Any payload from a server decodes or raises L{MalformedFrame}.
        """
        try:
            decodeServerFrame(payload)
        except MalformedFrame:
            self.assertIn(payload[:1], [b"", *(bytes([t]) for t in (1, 2, 3, 5, 9, 12, 13, 14, 15, 17, 20))])

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

    @given(
        st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=2**63), st.data()
    )
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


class SeqBatchFramingTests(SynchronousTestCase):
    """
    L{SEQ_BATCH} frames an int32 entry of at most L{BATCH_LIMIT} bytes as
    one BATCH frame made of its bytes as they are; any other as MSG frames.
    """

    @given(payloadLists, st.integers(min_value=1, max_value=2**63), st.data())
    def test_batchSplitAnyhow(self, payloads: list[bytes], first: int, data: st.DataObject) -> None:
        """
        An int32 entry's BATCH frame, split into reads at any points,
        decodes to its messages numbered from C{first}; its bytes end with
        the entry's, untouched.
        """
        raw = INT32.encodeMany(payloads)
        encoded = SEQ_BATCH.reframe(raw, INT32, first)
        assert encoded is not None
        self.assertEqual(encoded[-len(raw) :], raw)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=5)))
        decoder = SEQ_BATCH.decoder(len(raw) + BATCH_OVERHEAD)
        got = []
        for start, stop in zip([0, *cuts], [*cuts, len(encoded)], strict=True):
            frames, _ = decoder.feed(encoded[start:stop])
            got.extend(decodeServerFrame(f) for f in frames)
        self.assertEqual(got, [Batch(first, tuple(payloads))])

    def test_notInt32(self) -> None:
        """
        Data in another framing, none, or more than L{BATCH_LIMIT} bytes of
        it, is left to L{SeqFraming.encodeEntry}; so is all data for L{SEQ}.
        """
        self.assertIsNone(SEQ_BATCH.reframe(ASCII10.encodeMany([b"a"]), ASCII10, 1))
        self.assertIsNone(SEQ_BATCH.reframe(b"", INT32, 1))
        self.assertIsNone(SEQ_BATCH.reframe(INT32.encode(bytes(BATCH_LIMIT - 3)), INT32, 1))
        self.assertIsNotNone(SEQ_BATCH.reframe(INT32.encode(bytes(BATCH_LIMIT - 4)), INT32, 1))
        self.assertIsNone(SEQ.reframe(INT32.encodeMany([b"a"]), INT32, 1))

    def test_historyEncodesOncePerFraming(self) -> None:
        """
        The log keeps one encoding per framing: MSG frames for L{SEQ}, a
        BATCH for L{SEQ_BATCH}, and counts both with its encodings.
        """
        history = History(bytes(8))
        entry = history.appendPayloads([b"one", b"two"])
        before = history.size
        msgs = history.encoded(entry, SEQ)
        batch = history.encoded(entry, SEQ_BATCH)
        self.assertEqual(msgs, SEQ.encodeEntry([b"one", b"two"], 1))
        self.assertEqual(batch, framed(Batch(1, (b"one", b"two"))))
        self.assertIs(history.encoded(entry, SEQ_BATCH), batch)
        self.assertEqual((history.size, history.encodingBytes), (before, len(msgs) + len(batch)))
        history.evictOldest()
        self.assertEqual((history.size, history.encodingBytes), (0, 0))


class HistoryPayloadsTests(SynchronousTestCase):
    """
    L{History.payloads} splits an entry's data as the framing's decoder does.
    """

    @given(payloadLists)
    def test_int32(self, payloads: list[bytes]) -> None:
        """
        An int32 entry's messages, split by the fast path, are its own.
        """
        history = History(bytes(8))
        entry = history.append(INT32.encodeMany(payloads), INT32, len(payloads))
        self.assertEqual([bytes(p) for p in history.payloads(entry)], payloads)

    @given(payloadLists)
    def test_ascii10(self, payloads: list[bytes]) -> None:
        """
        An ascii10 entry's messages come from the general decoder.
        """
        history = History(bytes(8))
        entry = history.append(ASCII10.encodeMany(payloads), ASCII10, len(payloads))
        self.assertEqual([bytes(p) for p in history.payloads(entry)], payloads)
