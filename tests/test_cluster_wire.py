"""
Tests for L{streamd.cluster.wire}: streamd frames in NATS messages, and
frames larger than C{max_payload} in parts.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from streamd.cluster.wire import HEADER_ROOM, NODE, PART, Joiner, Packer
from streamd.framing import INT32

from .support import frames

LIMIT = HEADER_ROOM + 100


def join(messages: list[tuple[bytes, dict[str, str] | None]], joiner: Joiner | None = None) -> bytes:
    """
    What a receiver makes of C{messages}, in order.
    """
    joiner = joiner or Joiner(1_000_000)
    return b"".join(joiner.feed(data, headers) for data, headers in messages)


class PackerTests(SynchronousTestCase):
    """
    Batches become as few NATS messages as C{max_payload} allows.
    """

    def test_batchesShareAMessage(self) -> None:
        """
        Batches that fit together travel as one message with no headers.
        """
        blocks = [INT32.encodeMany([b"a", b"bc"]), INT32.encodeMany([b"def"])]
        self.assertEqual(Packer("n", LIMIT).pack(blocks), [(b"".join(blocks), None)])

    def test_splitAtFrameBoundaries(self) -> None:
        """
        A batch larger than the limit is cut between frames, each message
        at most the limit.
        """
        payloads = [b"x" * 90] * 10
        messages = Packer("n", LIMIT).pack([INT32.encodeMany(payloads)])
        self.assertGreater(len(messages), 1)
        self.assertTrue(all(len(data) <= LIMIT and headers is None for data, headers in messages))
        self.assertEqual(frames(b"".join(data for data, _ in messages)), payloads)

    def test_largeFrameInParts(self) -> None:
        """
        A frame larger than the limit travels in parts, each naming the
        node and its place, and is joined whole.
        """
        large = INT32.encode(b"L" * 1000)
        messages = Packer("node1", LIMIT).pack([INT32.encode(b"a"), large, INT32.encode(b"b")])
        parts = [headers for _, headers in messages if headers is not None]
        self.assertEqual(len(parts), 11)
        self.assertEqual(parts[0], {NODE: "node1", PART: "0/11"})
        self.assertEqual(frames(join(messages)), [b"a", b"L" * 1000, b"b"])

    @given(st.lists(st.lists(st.binary(max_size=400), max_size=5), max_size=8))
    def test_anyBatchesRoundTrip(self, batches: list[list[bytes]]) -> None:
        """
        Whatever the batches, the receiver gets every frame, in order.
        """
        messages = Packer("n", LIMIT).pack([INT32.encodeMany(batch) for batch in batches])
        self.assertEqual(frames(join(messages)), [p for batch in batches for p in batch])


class JoinerTests(SynchronousTestCase):
    """
    Parts are joined per node, and a frame with a lost part is given up.
    """

    def test_interleavedNodes(self) -> None:
        """
        Parts of two nodes' frames that arrive interleaved are joined per
        node.
        """
        one = Packer("one", LIMIT).parts(INT32.encode(b"1" * 300))
        two = Packer("two", LIMIT).parts(INT32.encode(b"2" * 300))
        interleaved = [m for pair in zip(one, two, strict=True) for m in pair]
        self.assertEqual(frames(join(interleaved)), [b"1" * 300, b"2" * 300])

    def test_lostPart(self) -> None:
        """
        A frame one of whose parts is lost is dropped and counted; the next
        frame is joined as usual.
        """
        joiner = Joiner(1_000_000)
        first = Packer("n", LIMIT).parts(INT32.encode(b"1" * 300))
        second = Packer("n", LIMIT).parts(INT32.encode(b"2" * 300))
        self.assertEqual(frames(join([*first[:1], *first[2:], *second], joiner)), [b"2" * 300])
        self.assertEqual(joiner.lost, 1)

    def test_tooLarge(self) -> None:
        """
        Parts adding up to more than the largest frame allowed are dropped.
        """
        joiner = Joiner(200)
        parts = Packer("n", LIMIT).parts(INT32.encode(b"1" * 300))
        self.assertEqual(join(parts, joiner), b"")
        self.assertEqual(joiner.lost, 1)
