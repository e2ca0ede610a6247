"""
Tests for L{streamd.cluster.wire}: streamd frames in NATS messages, frames
larger than C{max_payload} in parts, the bounds on joining them, and
signatures that hold only on the subject they were made for.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from streamd.cluster.guard import Drop, Signer
from streamd.cluster.wire import HEADER_ROOM, NODE, PART, SIGNATURE, Joiner, Packer, signedBy
from streamd.framing import INT32

from .support import frames

LIMIT = HEADER_ROOM + 100
ONE, TWO = "0123456789abcdef", "fedcba9876543210"
SUBJECT, ELSEWHERE = "streamd.prices", "streamd.news"


class _Joining:
    """
    A joiner on a clock, and what it dropped.
    """

    def __init__(self, maxFrame: int = 1_000_000, totalBytes: int | None = None) -> None:
        self.clock = Clock()
        self.drops: list[tuple[Drop, str]] = []
        self.subjects: list[str] = []
        self.joiner = Joiner(maxFrame, self.clock, self.dropped, totalBytes)

    def dropped(self, reason: Drop, node: str, subject: str) -> None:
        self.drops.append((reason, node))
        self.subjects.append(subject)

    def join(self, messages: list[tuple[bytes, dict[str, str] | None]], subject: str = SUBJECT) -> bytes:
        """
        What the receiver makes of C{messages}, in order, on C{subject}.
        """
        return b"".join(self.joiner.feed(subject, data, headers) for data, headers in messages)


def parts(node: str, payload: bytes) -> list[tuple[bytes, dict[str, str] | None]]:
    """
    C{payload}'s frame in parts, as C{node} sends it on C{SUBJECT}.
    """
    return Packer(node, LIMIT).parts(SUBJECT, INT32.encode(payload))


class PackerTests(SynchronousTestCase):
    """
    Batches become as few NATS messages as C{max_payload} allows.
    """

    def test_batchesShareAMessage(self) -> None:
        """
        Batches that fit together travel as one message with no headers.
        """
        blocks = [INT32.encodeMany([b"a", b"bc"]), INT32.encodeMany([b"def"])]
        self.assertEqual(Packer(ONE, LIMIT).pack(SUBJECT, blocks), [(b"".join(blocks), None)])

    def test_splitAtFrameBoundaries(self) -> None:
        """
        A batch larger than the limit is cut between frames, each message
        at most the limit.
        """
        payloads = [b"x" * 90] * 10
        messages = Packer(ONE, LIMIT).pack(SUBJECT, [INT32.encodeMany(payloads)])
        self.assertGreater(len(messages), 1)
        self.assertTrue(all(len(data) <= LIMIT and headers is None for data, headers in messages))
        self.assertEqual(frames(b"".join(data for data, _ in messages)), payloads)

    def test_largeFrameInParts(self) -> None:
        """
        A frame larger than the limit travels in parts, each naming the
        node, the frame and its place, and is joined whole.
        """
        large = INT32.encode(b"L" * 1000)
        messages = Packer(ONE, LIMIT).pack(SUBJECT, [INT32.encode(b"a"), large, INT32.encode(b"b")])
        headers = [h for _, h in messages if h is not None]
        self.assertEqual(len(headers), 11)
        self.assertEqual(headers[0], {NODE: ONE, PART: "1:0/11"})
        self.assertEqual(frames(_Joining().join(messages)), [b"a", b"L" * 1000, b"b"])

    def test_streamsApart(self) -> None:
        """
        Batches of several streams that waited together travel per stream:
        each NATS message holds one stream's frames, on its subject, in the
        order they were published in that stream.
        """
        batches = [
            (SUBJECT, INT32.encode(b"p1")),
            (ELSEWHERE, INT32.encode(b"n1")),
            (SUBJECT, INT32.encode(b"p2")),
            (ELSEWHERE, INT32.encodeMany([b"n2", b"n3"])),
        ]
        messages = Packer(ONE, LIMIT).packEach(batches)
        self.assertEqual(
            [(subject, frames(data), headers) for subject, data, headers in messages],
            [(SUBJECT, [b"p1", b"p2"], None), (ELSEWHERE, [b"n1", b"n2", b"n3"], None)],
        )

    @given(st.lists(st.tuples(st.sampled_from([SUBJECT, ELSEWHERE]), st.lists(st.binary(max_size=400), max_size=5))))
    def test_anyStreamsRoundTrip(self, batches: list[tuple[str, list[bytes]]]) -> None:
        """
        Whatever the batches and their streams, the receiver gets every
        frame on its stream's subject, in that stream's order.
        """
        messages = Packer(ONE, LIMIT).packEach([(subject, INT32.encodeMany(batch)) for subject, batch in batches])
        joining = _Joining()
        for subject in (SUBJECT, ELSEWHERE):
            mine = [(data, headers) for on, data, headers in messages if on == subject]
            sent = [p for on, batch in batches if on == subject for p in batch]
            self.assertEqual(frames(joining.join(mine, subject)), sent)

    @given(st.lists(st.lists(st.binary(max_size=400), max_size=5), max_size=8))
    def test_anyBatchesRoundTrip(self, batches: list[list[bytes]]) -> None:
        """
        Whatever the batches, the receiver gets every frame, in order.
        """
        messages = Packer(ONE, LIMIT).pack(SUBJECT, [INT32.encodeMany(batch) for batch in batches])
        self.assertEqual(frames(_Joining().join(messages)), [p for batch in batches for p in batch])

    def test_signed(self) -> None:
        """
        With a key, every message names its node and is signed; a message
        changed on the way, or signed with another key, is not.
        """
        signer = Signer(b"shared")
        messages = Packer(ONE, LIMIT, signer).pack(SUBJECT, [INT32.encode(b"a"), INT32.encode(b"L" * 300)])
        self.assertTrue(all(headers and headers[NODE] == ONE for _, headers in messages))
        self.assertTrue(all(signedBy(signer, SUBJECT, data, headers) for data, headers in messages))
        data, headers = messages[0]
        self.assertFalse(signedBy(signer, SUBJECT, data + b"x", headers))
        self.assertFalse(signedBy(Signer(b"other"), SUBJECT, data, headers))
        self.assertFalse(signedBy(signer, SUBJECT, data, {**(headers or {}), SIGNATURE: "0" * 64}))
        self.assertFalse(signedBy(signer, SUBJECT, data, None))

    def test_signedForItsSubject(self) -> None:
        """
        A signed message, whole or a part, replayed on another stream's
        subject is not signed there.
        """
        signer = Signer(b"shared")
        messages = Packer(ONE, LIMIT, signer).pack(SUBJECT, [INT32.encode(b"a"), INT32.encode(b"L" * 700)])
        self.assertGreater(len(messages), 2)
        self.assertFalse(any(signedBy(signer, ELSEWHERE, data, headers) for data, headers in messages))


class JoinerTests(SynchronousTestCase):
    """
    Parts are joined per node, within bounds of memory and time; what is
    out of place is dropped and said why.
    """

    def test_interleavedNodes(self) -> None:
        """
        Parts of two nodes' frames that arrive interleaved are joined per
        node.
        """
        interleaved = [m for pair in zip(parts(ONE, b"1" * 300), parts(TWO, b"2" * 300), strict=True) for m in pair]
        joining = _Joining()
        self.assertEqual(frames(joining.join(interleaved)), [b"1" * 300, b"2" * 300])
        self.assertEqual((joining.drops, joining.joiner.held), ([], 0))

    def test_lostPart(self) -> None:
        """
        A frame one of whose parts is lost is dropped, and each part that
        comes after the loss; the next frame is joined as usual.
        """
        packer = Packer(ONE, LIMIT)
        first, second = packer.parts(SUBJECT, INT32.encode(b"1" * 300)), packer.parts(SUBJECT, INT32.encode(b"2" * 300))
        joining = _Joining()
        self.assertEqual(frames(joining.join([*first[:1], *first[2:], *second])), [b"2" * 300])
        self.assertEqual(joining.drops, [(Drop.BAD_PART, ONE)] * 2)

    def test_forgedPartOfAnotherFrame(self) -> None:
        """
        A part that names a node and a frame other than the one being joined
        is dropped, and does not spoil that node's frame.
        """
        joining = _Joining()
        real = parts(ONE, b"1" * 300)
        forged = (b"evil", {NODE: ONE, PART: "99:1/3"})
        self.assertEqual(frames(joining.join([real[0], forged, *real[1:]])), [b"1" * 300])
        self.assertEqual(joining.drops, [(Drop.BAD_PART, ONE)])

    def test_partOnAnotherSubject(self) -> None:
        """
        A part of a node's frame replayed on another stream's subject is
        dropped there, and does not spoil the frame on its own subject.
        """
        joining = _Joining()
        real = parts(ONE, b"1" * 300)
        joined = [joining.joiner.feed(SUBJECT, *real[0]), joining.joiner.feed(ELSEWHERE, *real[1])]
        joined += [joining.joiner.feed(SUBJECT, *part) for part in real[1:]]
        self.assertEqual(frames(b"".join(joined)), [b"1" * 300])
        self.assertEqual((joining.drops, joining.subjects), ([(Drop.BAD_PART, ONE)], [ELSEWHERE]))

    def test_malformedHeaders(self) -> None:
        """
        A part header that does not parse, an index past the count, or a
        node that is not a node's identity: dropped as bad headers.
        """
        joining = _Joining()
        for headers in ({NODE: ONE, PART: "0/3"}, {NODE: ONE, PART: "1:3/3"}, {NODE: "me", PART: "1:0/3"}):
            self.assertEqual(joining.joiner.feed(SUBJECT, b"x", headers), b"")
        self.assertEqual([reason for reason, _ in joining.drops], [Drop.BAD_HEADER] * 3)

    def test_tooLarge(self) -> None:
        """
        Parts adding up to more than the largest frame allowed are dropped,
        and so are the ones after.
        """
        joining = _Joining(maxFrame=200)
        self.assertEqual(joining.join(parts(ONE, b"1" * 300)), b"")
        self.assertEqual(joining.drops[0], (Drop.TOO_LARGE, ONE))
        self.assertEqual(joining.joiner.held, 0)

    def test_totalBounded(self) -> None:
        """
        Unfinished frames of many nodes hold no more than the total allowed:
        a part past it is dropped and its frame given up.
        """
        joining = _Joining(totalBytes=1000)
        for n in range(20):
            joining.joiner.feed(SUBJECT, b"x" * 100, {NODE: f"{n:016x}", PART: "1:0/5"})
        self.assertLessEqual(joining.joiner.held, 1000)
        self.assertEqual([reason for reason, _ in joining.drops], [Drop.PART_MEMORY] * 10)

    def test_timeBounded(self) -> None:
        """
        A frame whose parts stop coming is given up after
        C{PART_SECONDS}, its memory freed, without any more traffic.
        """
        joining = _Joining()
        joining.join(parts(ONE, b"1" * 300)[:2])
        self.assertGreater(joining.joiner.held, 0)
        joining.clock.advance(joining.joiner.seconds)
        self.assertEqual((joining.joiner.held, joining.drops), (0, [(Drop.PART_TIMEOUT, ONE)]))
        self.assertEqual(joining.subjects, [SUBJECT])
        self.assertEqual(joining.clock.getDelayedCalls(), [])
