"""
Tests for L{streamd.framing}: any split of a byte stream gives the same
messages, limits are exact, and bad headers stop the decoder.
"""

from __future__ import annotations

import tracemalloc

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from streamd.framing import (
    ASCII10,
    INT32,
    SEAL_AT,
    VIEW_FROM,
    BadHeader,
    FrameTooLong,
    Framing,
)
from streamd.reads import READ_SIZE as LIMIT
from streamd.reads import SMALL_READ

MESSAGES = [b"", b"a", b"The time is 0.018736", b"\x00\xff" * 300, "caf\u00e9".encode()]

# What a partial frame may cost beyond its size: the bound (1.25
# times, plus a small constant per connection).
HELD_RATIO = 1.25
HELD_CONSTANT = 512


def cutInto(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    C{data} as reads of the lengths C{cuts}, then one of the rest.
    """
    chunks = []
    offset = 0
    for cut in cuts:
        chunks.append(data[offset : offset + cut])
        offset += cut
    chunks.append(data[offset:])
    return chunks


class _FramingMixin:
    """
    Checks every framing must pass; mixed into one TestCase per framing.
    """

    framing: Framing

    def feedAll(self, chunks: list[bytes], maxLength: int = 1 << 20) -> tuple[list[bytes], bytes]:
        decoder = self.framing.decoder(maxLength)
        payloads: list[bytes] = []
        raw = b""
        for chunk in chunks:
            got, gotRaw = decoder.feed(chunk)
            payloads.extend(got)
            raw += gotRaw
        self.assertIsNone(decoder.error)  # type: ignore[attr-defined]
        return payloads, raw

    def test_byteAtATime(self) -> None:
        """
        Frames fed one byte per read come out whole and in order.
        """
        data = self.framing.encodeMany(MESSAGES)
        payloads, raw = self.feedAll([data[i : i + 1] for i in range(len(data))])
        self.assertEqual(payloads, MESSAGES)  # type: ignore[attr-defined]
        self.assertEqual(raw, data)  # type: ignore[attr-defined]

    def test_heldByteAtATime(self) -> None:
        """
        A frame fed one byte per read costs at most 1.25 times the bytes
        received plus a constant, both as measured by C{tracemalloc} and as
        L{Decoder.held} says (which never says less than the bytes held), and
        nothing once it is complete.
        """
        # 16 KiB: a decoder that doubled its buffer, or kept a copy, would
        # hold twice that, well past the bound; every byte is traced.
        payload = bytes(range(256)) * 64
        data = self.framing.encode(payload)
        reads = [data[i : i + 1] for i in range(len(data))]
        decoder = self.framing.decoder(len(payload))
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self.addCleanup(tracemalloc.stop)  # type: ignore[attr-defined]
        before = tracemalloc.get_traced_memory()[0]
        outOfBounds = []
        for count, read in enumerate(reads[:-1], 1):
            decoder.feed(read)
            if not count <= decoder.held <= HELD_RATIO * count + HELD_CONSTANT:
                outOfBounds.append((count, decoder.held))
        grown = tracemalloc.get_traced_memory()[0] - before
        self.assertEqual(outOfBounds, [])  # type: ignore[attr-defined]
        self.assertLessEqual(grown, HELD_RATIO * len(data) + 4096)  # type: ignore[attr-defined]
        self.assertEqual(decoder.feed(reads[-1]), ([payload], data))  # type: ignore[attr-defined]
        self.assertEqual(decoder.held, 0)  # type: ignore[attr-defined]

    def test_smallReadsSealed(self) -> None:
        """
        Small reads of a large frame gather in buffers of at most
        L{SEAL_AT} bytes (and their growth), never in one that grows to the
        whole frame, whose every larger copy would leave the process holding
        about twice the frame; the frame comes out whole.
        """
        payload = bytes(range(256)) * 1024
        data = self.framing.encode(payload)
        decoder = self.framing.decoder(len(payload))
        for offset in range(0, len(data) - 100, 100):
            decoder.feed(data[offset : offset + 100])
        chunks = decoder._chunks  # type: ignore[attr-defined]
        self.assertGreater(len(chunks), 3)  # type: ignore[attr-defined]
        self.assertLessEqual(max(map(len, chunks)), SEAL_AT + 100)  # type: ignore[attr-defined]
        rest = data[offset + 100 :]
        self.assertEqual(decoder.feed(rest)[0], [payload])  # type: ignore[attr-defined]

    def test_manyInOneRead(self) -> None:
        """
        Many frames in a single read all come out, and the raw bytes returned
        are exactly the input.
        """
        data = self.framing.encodeMany(MESSAGES * 50)
        payloads, raw = self.feedAll([data])
        self.assertEqual(payloads, MESSAGES * 50)  # type: ignore[attr-defined]
        self.assertEqual(raw, data)  # type: ignore[attr-defined]

    def test_rawHoldsOnlyCompleteFrames(self) -> None:
        """
        A read ending inside a frame returns the raw bytes of the complete
        frames only; the rest comes with the read that completes it.
        """
        first, second = self.framing.encode(b"one"), self.framing.encode(b"two")
        decoder = self.framing.decoder(100)
        self.assertEqual(decoder.feed(first + second[:-1]), ([b"one"], first))  # type: ignore[attr-defined]
        self.assertEqual(decoder.feed(second[-1:]), ([b"two"], second))  # type: ignore[attr-defined]

    def test_emptyMessage(self) -> None:
        """
        A zero-length frame is a valid, empty message.
        """
        self.assertEqual(self.feedAll([self.framing.encode(b"")])[0], [b""])  # type: ignore[attr-defined]

    def test_exactlyAtLimit(self) -> None:
        """
        A frame of exactly the maximum length is accepted.
        """
        payload = b"x" * 1000
        self.assertEqual(self.feedAll([self.framing.encode(payload)], 1000)[0], [payload])  # type: ignore[attr-defined]

    def test_overLimit(self) -> None:
        """
        A header announcing one byte over the limit stops the decoder with
        L{FrameTooLong} as soon as the header is read, before the body comes.
        """
        decoder = self.framing.decoder(1000)
        frame = self.framing.encode(b"ok") + self.framing.header(1001)
        payloads, raw = decoder.feed(frame)
        self.assertEqual(payloads, [b"ok"])  # type: ignore[attr-defined]
        self.assertIsInstance(decoder.error, FrameTooLong)  # type: ignore[attr-defined]
        assert isinstance(decoder.error, FrameTooLong)
        self.assertEqual((decoder.error.length, decoder.error.limit), (1001, 1000))  # type: ignore[attr-defined]
        self.assertEqual(decoder.feed(self.framing.encode(b"later")), ([], b""))  # type: ignore[attr-defined]

    def test_largeFrameInManyReads(self) -> None:
        """
        A large frame arriving in many small reads is assembled once, whole.
        """
        payload = bytes(range(256)) * 4096
        data = self.framing.encode(payload)
        chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        payloads, raw = self.feedAll(chunks, len(payload))
        self.assertEqual(payloads, [payload])  # type: ignore[attr-defined]

    def test_splitFramePayloadIsAView(self) -> None:
        """
        The payload of a frame that spanned reads is a view of the raw bytes
        returned with it: the frame is joined once and not copied again.
        """
        payload = bytes(range(256)) * 1024
        data = self.framing.encode(payload)
        decoder = self.framing.decoder(len(payload))
        self.assertEqual(decoder.feed(data[:1000]), ([], b""))  # type: ignore[attr-defined]
        payloads, raw = decoder.feed(data[1000:])
        self.assertEqual(raw, data)  # type: ignore[attr-defined]
        [view] = payloads
        self.assertIsInstance(view, memoryview)  # type: ignore[attr-defined]
        assert isinstance(view, memoryview)
        self.assertIs(view.obj, raw)  # type: ignore[attr-defined]
        self.assertEqual(bytes(view), payload)  # type: ignore[attr-defined]

    def test_framesAfterSplitFrameInSameBatch(self) -> None:
        """
        The read that completes a split frame also yields the whole frames
        after it, in the same batch, and holds the partial one that follows.
        """
        big, small, last = b"b" * 5000, b"small", b"last one"
        data = self.framing.encodeMany([big, small, last])
        cut = len(data) - 3
        decoder = self.framing.decoder(10_000)
        self.assertEqual(decoder.feed(data[:100]), ([], b""))  # type: ignore[attr-defined]
        payloads, raw = decoder.feed(data[100:cut])
        self.assertEqual((payloads, raw), ([big, small], self.framing.encodeMany([big, small])))  # type: ignore[attr-defined]
        self.assertEqual(decoder.feed(data[cut:]), ([last], self.framing.encode(last)))  # type: ignore[attr-defined]

    def test_overLimitAfterSplitFrame(self) -> None:
        """
        A header over the limit in the read that completes a split frame
        stops the decoder after that frame, and nothing later comes out.
        """
        frame = self.framing.encode(b"p" * 500)
        decoder = self.framing.decoder(1000)
        self.assertEqual(decoder.feed(frame[:100]), ([], b""))  # type: ignore[attr-defined]
        payloads, raw = decoder.feed(frame[100:] + self.framing.header(1001) + b"x" * 50)
        self.assertEqual((payloads, raw), ([b"p" * 500], frame))  # type: ignore[attr-defined]
        self.assertIsInstance(decoder.error, FrameTooLong)  # type: ignore[attr-defined]
        self.assertEqual(decoder.feed(self.framing.encode(b"later")), ([], b""))  # type: ignore[attr-defined]

    def test_splitFramesBackToBack(self) -> None:
        """
        Large frames sent back to back, each completed by a read that starts
        the next, come out whole, and their raw bytes are the input.
        """
        messages = [bytes([i]) * (150_000 + i) for i in range(4)]
        data = self.framing.encodeMany(messages)
        chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        self.assertEqual(self.feedAll(chunks), (messages, data))  # type: ignore[attr-defined]

    # Each framing's TestCase runs this same check; that is the intent.
    @settings(suppress_health_check=[HealthCheck.differing_executors], deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 64), max_size=40))
    def test_anySplit(self, messages: list[bytes], cuts: list[int]) -> None:
        """
        However the byte stream is cut into reads, the same messages come out.
        """
        data = self.framing.encodeMany(messages)
        self.assertEqual(self.feedAll(cutInto(data, cuts)), (messages, data))  # type: ignore[attr-defined]

    @settings(suppress_health_check=[HealthCheck.differing_executors], deadline=None)
    @given(
        st.lists(st.tuples(st.sampled_from([0, 1, 3, 600]), st.integers(1, 40)), max_size=8),
        st.lists(st.integers(1, 3000), max_size=20),
    )
    def test_runsAnySplit(self, runs: list[tuple[int, int]], cuts: list[int]) -> None:
        """
        Runs of frames of one length (which the decoder checks together),
        of a few lengths in any order, cut into reads anywhere: the same
        messages come out, each with its own bytes.
        """
        messages = [bytes([n % 251]) * size for n, (size, repeat) in enumerate(runs) for _ in range(repeat)]
        messages = [m[:-1] + bytes([i % 7]) if m else m for i, m in enumerate(messages)]
        data = self.framing.encodeMany(messages)
        payloads, raw = self.feedAll(cutInto(data, cuts))  # type: ignore[attr-defined]
        self.assertEqual(([bytes(p) for p in payloads], raw), (messages, data))  # type: ignore[attr-defined]

    @settings(suppress_health_check=[HealthCheck.differing_executors])
    @given(st.lists(st.tuples(st.sampled_from([0, 1, 3, 600]), st.integers(1, 40)), max_size=8))
    @example([(3, 40)])
    @example([(0, 16)])
    @example([(3, 1), (2, 1), (4, 1)] * 6)
    def test_splitEntry(self, runs: list[tuple[int, int]]) -> None:
        """
        A history entry's bytes split back into its messages, whether they
        all have one length (a fixed-size feed's, cut at once) or not, even
        when their lengths average the first's.
        """
        messages = [bytes([n % 251]) * size for n, (size, repeat) in enumerate(runs) for _ in range(repeat)]
        data = self.framing.encodeMany(messages)
        payloads = self.framing.split(data, len(messages))  # type: ignore[attr-defined]
        self.assertEqual([bytes(p) for p in payloads], messages)  # type: ignore[attr-defined]

    @settings(suppress_health_check=[HealthCheck.differing_executors], deadline=None, max_examples=30)
    @given(st.sampled_from([0, 1, 64, 1000, 1024, 65536, 150_000]), st.integers(1, 300_000))
    @example(65536, 65540 * 3 + 10)
    def test_readsEndOnFrames(self, size: int, first: int) -> None:
        """
        A fixed-size feed read in the sizes L{Decoder.readSize} asks for,
        after a first read of any size: once a read has ended within a
        frame, every later one ends on a frame, and one that begins on a
        frame is relayed as it came, never joined; the messages are the
        same.  (Frames are at most a quarter of a MiB minus 64 KiB here,
        so that a read of at least L{SMALL_READ} can end on one.)
        """
        messages = [bytes([i % 251]) * size for i in range(max(4, 1_200_000 // (size + 10)))]
        data = self.framing.encodeMany(messages)
        stride = len(data) // len(messages)
        decoder = self.framing.decoder(1 << 20)
        got: list[bytes] = []
        fed = 0
        # Whether a read has ended within a frame, past its header.
        spanned = False
        while fed < len(data):
            want = decoder.readSize(LIMIT) if fed else first
            start = fed
            chunk = data[fed : fed + want]
            fed += len(chunk)
            payloads, raw = decoder.feed(chunk)
            got += [bytes(p) for p in payloads]
            if spanned and len(chunk) == want:
                self.assertEqual(fed % stride, 0)  # type: ignore[attr-defined]
                if start % stride == 0:
                    self.assertIs(raw, chunk)  # type: ignore[attr-defined]
            spanned = spanned or fed % stride >= self.framing.headerSize
        self.assertEqual(got, messages)  # type: ignore[attr-defined]

    @settings(suppress_health_check=[HealthCheck.differing_executors], deadline=None, max_examples=30)
    @given(st.lists(st.binary(max_size=300_000), max_size=6), st.lists(st.integers(1, 300_000), max_size=20))
    def test_readSizeNearTarget(self, messages: list[bytes], cuts: list[int]) -> None:
        """
        Whatever came before, the read size asked for is the target, or
        at least L{SMALL_READ} and at most half the largest frame
        over the target.
        """
        decoder = self.framing.decoder(1 << 20)
        largest = max((len(self.framing.encode(m)) for m in messages), default=0)
        for chunk in cutInto(self.framing.encodeMany(messages), cuts):
            decoder.feed(chunk)
            want = decoder.readSize(LIMIT)
            within = SMALL_READ <= want <= LIMIT + largest // 2
            self.assertTrue(want == LIMIT or within, want)  # type: ignore[attr-defined]

    def test_longRunInOneRead(self) -> None:
        """
        Ten thousand frames of one length in one read, more than the
        decoder's largest look ahead, then two of another: all come out.
        """
        messages = [b"%05d" % i for i in range(10_000)] + [b"x", b"y"]
        data = self.framing.encodeMany(messages)
        self.assertEqual(self.feedAll([data]), (messages, data))  # type: ignore[attr-defined]

    def test_overLimitInRun(self) -> None:
        """
        A header over the limit among frames of one length stops the
        decoder there, after the frames before it.
        """
        decoder = self.framing.decoder(1000)
        good = self.framing.encode(b"ok")
        payloads, raw = decoder.feed(good * 20 + self.framing.header(1001) + good * 5)
        self.assertEqual(payloads, [b"ok"] * 20)  # type: ignore[attr-defined]
        self.assertEqual(raw, good * 20)  # type: ignore[attr-defined]
        self.assertIsInstance(decoder.error, FrameTooLong)  # type: ignore[attr-defined]

    @settings(suppress_health_check=[HealthCheck.differing_executors], deadline=None)
    @given(st.lists(st.binary(max_size=9000), max_size=6), st.lists(st.integers(1, 5000), max_size=40))
    def test_heldAnySplit(self, messages: list[bytes], cuts: list[int]) -> None:
        """
        However the byte stream is cut into reads, what the decoder holds
        costs at most 1.25 times the bytes received of unfinished frames plus
        a constant, and nothing on a frame boundary.
        """
        data = self.framing.encodeMany(messages)
        decoder = self.framing.decoder(1 << 20)
        fed = done = 0
        for cut in [*cuts, len(data)]:
            chunk = data[fed : fed + cut]
            fed += len(chunk)
            done += len(decoder.feed(chunk)[1])
            partial = fed - done
            self.assertLessEqual(decoder.held, HELD_RATIO * partial + HELD_CONSTANT)  # type: ignore[attr-defined]
            self.assertEqual(decoder.held == 0, partial == 0)  # type: ignore[attr-defined]


class Int32FramingTests(_FramingMixin, SynchronousTestCase):
    framing = INT32

    def test_header(self) -> None:
        """
        The header is the length as 4 unsigned big-endian bytes.
        """
        self.assertEqual(INT32.encode(b"abc"), b"\x00\x00\x00\x03abc")
        self.assertEqual(INT32.header(0xFFFFFFFF), b"\xff\xff\xff\xff")

    def test_tooLongToEncode(self) -> None:
        """
        A length that 4 bytes cannot hold is refused, not wrapped around.
        """
        self.assertRaises(ValueError, INT32.header, 1 << 32)

    def test_largePayloadsAreViews(self) -> None:
        """
        A payload of L{VIEW_FROM} bytes or more that came whole in one read
        is a view of the read, not a copy; smaller ones are C{bytes}.
        """
        large, small = b"x" * VIEW_FROM, b"y" * (VIEW_FROM - 1)
        data = INT32.encode(large) + INT32.encode(small)
        payloads, raw = INT32.decoder(VIEW_FROM).feed(data)
        self.assertEqual([type(payload) for payload in payloads], [memoryview, bytes])
        self.assertIs(payloads[0].obj, data)  # type: ignore[union-attr]
        self.assertEqual(payloads, [large, small])
        self.assertIs(raw, data)


class ASCII10FramingTests(_FramingMixin, SynchronousTestCase):
    framing = ASCII10

    def test_header(self) -> None:
        """
        The header is the byte length, left-aligned and space-padded to 10
        characters, as the exercise's C{f"{len(msg):<10}"} makes it.
        """
        self.assertEqual(ASCII10.encode(b"abc"), f"{3:<10}".encode() + b"abc")
        self.assertEqual(ASCII10.encode("caf\u00e9".encode()), b"5         caf\xc3\xa9")

    def test_badHeader(self) -> None:
        """
        A header that is not a left-aligned decimal number stops the decoder
        with L{BadHeader}.
        """
        for header in [b"GET / HTTP", b"  12      ", b"-1        ", b"1 2       "]:
            decoder = ASCII10.decoder(100)
            self.assertEqual(decoder.feed(header + b"x" * 20), ([], b""))
            self.assertIsInstance(decoder.error, BadHeader)

    def test_badHeaderAfterSplitFrame(self) -> None:
        """
        A bad header that follows a frame split across reads (within its
        header, or within its payload) stops the decoder after that frame,
        and nothing later comes out.
        """
        good = ASCII10.encode(b"hello")
        for cut in (3, 12):
            decoder = ASCII10.decoder(100)
            self.assertEqual(decoder.feed(good[:cut]), ([], b""))
            self.assertEqual(decoder.feed(good[cut:] + b"GET / HTTP/1.1"), ([b"hello"], good))
            self.assertIsInstance(decoder.error, BadHeader)
            self.assertEqual(decoder.feed(good), ([], b""))
