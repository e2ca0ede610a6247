"""
Tests for L{streamd.sources.lines}: cutting a byte stream into lines with
bounded memory, and how line sources log and publish.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.fanout.hub import Hub
from streamd.framing import INT32, Framing
from streamd.linesplit import LineSplitter
from streamd.sources import SourceContext
from streamd.sources.lines import LineSource
from streamd.stats import Stats


class Recorder:
    """
    A hub subscriber that keeps the messages and the batches it is handed.
    """

    framing: Framing = INT32
    live = True

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.batches = 0
        self._decoder = INT32.decoder(INT32.maxLength)

    def deliver(self, data: bytes, count: int) -> None:
        self.batches += 1
        self.messages.extend(self._decoder.feed(data)[0])


def recordingContext(reactor: object, **settings: object) -> tuple[SourceContext, Recorder]:
    """
    A source context whose hub has one L{Recorder} subscribed.
    """
    hub = Hub(Stats(), reactor)  # type: ignore[arg-type]
    recorder = Recorder()
    hub.subscribe(recorder)
    return SourceContext(hub, reactor, **settings), recorder  # type: ignore[arg-type]


class LineSplitterTests(SynchronousTestCase):
    """
    Lines come out whole whatever the reads, and never larger than the limit.
    """

    def setUp(self) -> None:
        self.skips: list[tuple[int, bool]] = []
        self.splitter = LineSplitter(10, lambda length, finished: self.skips.append((length, finished)))

    def test_linesAndNewlinesStripped(self) -> None:
        """
        Each C{\\n}-terminated line comes out without its C{\\n}, and without a
        C{\\r} just before it; a C{\\r} elsewhere is kept, and an empty line is
        an empty message.
        """
        self.assertEqual(
            self.splitter.feed(b"one\ntwo\r\n\nthr\ree\n\r\r\n"),
            [b"one", b"two", b"", b"thr\ree", b"\r"],
        )

    def test_partialLineWaits(self) -> None:
        """
        A line without its newline yet is held until the newline comes, even
        across many reads.
        """
        self.assertEqual(self.splitter.feed(b"ab"), [])
        self.assertEqual(self.splitter.feed(b"c"), [])
        self.assertEqual(self.splitter.feed(b"d\ne"), [b"abcd"])
        self.assertEqual(self.splitter.feed(b"\n"), [b"e"])

    def test_finishGivesUnterminatedLastLine(self) -> None:
        """
        At the end of input, a last line without a newline comes out too, and
        then nothing more.
        """
        self.splitter.feed(b"one\nlast\r")
        self.assertEqual(self.splitter.finish(), [b"last"])
        self.assertEqual(self.splitter.finish(), [])

    def test_exactlyAtLimit(self) -> None:
        """
        A line of exactly the limit is kept, also with a CRLF ending that
        arrives in pieces.
        """
        self.assertEqual(self.splitter.feed(b"x" * 10 + b"\n"), [b"x" * 10])
        self.assertEqual(self.splitter.feed(b"y" * 10 + b"\r"), [])
        self.assertEqual(self.splitter.feed(b"\n"), [b"y" * 10])
        self.assertEqual(self.skips, [])

    def test_overLimitInOneRead(self) -> None:
        """
        A whole line one byte over the limit is skipped and reported once with
        its length; the lines around it come out.
        """
        self.assertEqual(self.splitter.feed(b"a\n" + b"x" * 11 + b"\nb\n"), [b"a", b"b"])
        self.assertEqual(self.skips, [(11, True)])

    def test_overLimitAcrossReads(self) -> None:
        """
        A line that goes over the limit before its end is reported at once
        (not finished), its bytes are not kept, and it is reported again with
        its whole length when it ends; the next line is intact.
        """
        self.assertEqual(self.splitter.feed(b"x" * 8), [])
        self.assertEqual(self.splitter.feed(b"x" * 8), [])
        self.assertEqual(self.skips, [(16, False)])
        self.assertEqual(self.splitter._partial, [])
        self.assertEqual(self.splitter.feed(b"x" * 100), [])
        self.assertEqual(self.splitter.feed(b"xx\nnext\n"), [b"next"])
        self.assertEqual(self.skips, [(16, False), (118, True)])

    def test_binaryWithoutNewlinesBounded(self) -> None:
        """
        Megabytes without a newline never make the splitter hold more than
        the limit (plus one byte for a CR).
        """
        splitter = LineSplitter(1000)
        chunk = bytes(range(256)).replace(b"\n", b"") * 40
        held = 0
        for _ in range(500):
            self.assertEqual(splitter.feed(chunk), [])
            held = max(held, splitter._partialLength)
        self.assertLessEqual(held, 1001)
        self.assertEqual(splitter._partial, [])

    def test_overLongAtEnd(self) -> None:
        """
        Input that ends inside an over-long line reports it as finished, and
        publishes nothing of it.
        """
        self.splitter.feed(b"x" * 30)
        self.assertEqual(self.splitter.finish(), [])
        self.assertEqual(self.skips, [(30, False), (30, True)])

    def test_skipToNextLine(self) -> None:
        """
        After L{LineSplitter.skipToNextLine}, the rest of the current line is
        dropped without a report, however long it is.
        """
        self.splitter.skipToNextLine()
        self.assertEqual(self.splitter.feed(b"tail of a line " * 10), [])
        self.assertEqual(self.splitter.feed(b"\nwhole\n"), [b"whole"])
        self.assertEqual(self.skips, [])

    def test_reset(self) -> None:
        """
        L{LineSplitter.reset} forgets an unfinished line.
        """
        self.splitter.feed(b"half")
        self.splitter.reset()
        self.assertEqual(self.splitter.feed(b"new\n"), [b"new"])

    @given(
        st.lists(st.binary(max_size=14).map(lambda b: b.replace(b"\n", b"")), max_size=20),
        st.lists(st.integers(1, 20), max_size=30),
    )
    def test_anySplit(self, lines: list[bytes], cuts: list[int]) -> None:
        """
        However the stream is cut into reads, the same lines come out, and
        exactly those over the limit are skipped.
        """
        data = b"".join(line + b"\n" for line in lines)
        splitter = LineSplitter(10)
        out: list[bytes] = []
        offset = 0
        for cut in [*cuts, len(data)]:
            out.extend(splitter.feed(data[offset : offset + cut]))
            offset += cut
        out.extend(splitter.finish())
        expected = [line.removesuffix(b"\r") for line in lines]
        self.assertEqual(out, [line for line in expected if len(line) <= 10])


class LineSourceTests(SynchronousTestCase):
    """
    A line source publishes a read's lines as one batch and logs skipped
    lines, rate-limited.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.clock = Clock()
        context, self.recorder = recordingContext(self.clock, maxMessageSize=10)
        self.source = LineSource(context)
        self.source.spec = "test:source"
        self.splitter = self.source.lineSplitter("output")

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_batchPublished(self) -> None:
        """
        The lines of one read reach clients as one batch, and are counted as
        messages in.
        """
        self.source.publishLines(self.splitter.feed(b"a\nb\nc\n"))
        self.source.publishLines([])
        self.assertEqual(self.recorder.messages, [b"a", b"b", b"c"])
        self.assertEqual(self.recorder.batches, 1)
        stats = self.source.context.hub.stats
        self.assertEqual((stats.messagesIn, stats.bytesIn), (3, 3))

    def test_skipLogged(self) -> None:
        """
        A skipped line is logged with the source, its length and the limit.
        """
        self.splitter.feed(b"y" * 25 + b"\n")
        self.assertEqual(
            self.logLines(),
            ["test:source: skipped a 25-byte line of its output, over the 10-byte --max-message-size"],
        )

    def test_skipNotesRateLimited(self) -> None:
        """
        A flood of over-long lines gives at most 10 notes a second, then one
        summary.
        """
        self.splitter.feed((b"z" * 20 + b"\n") * 100)
        self.assertEqual(len(self.logLines()), 10)
        self.clock.advance(1)
        self.assertEqual(
            self.logLines()[-1], "test:source: 90 more notes about skipped long lines not logged one by one"
        )
