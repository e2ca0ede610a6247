"""
Tests for L{streamd.sources.stdin}: lines read from a pipe standing in for
the daemon's standard input.
"""

from __future__ import annotations

import fcntl
import os

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from streamd.sources import makeSource
from streamd.sources.stdin import StdinSource

from .support import waitFor
from .test_sources_lines import recordingContext


class StdinSourceTests(TestCase):
    """
    A pipe read on the real reactor, with short bounded waits.
    """

    timeout = 10

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        readEnd, self.writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        self.addCleanup(self.closeWriteEnd)
        context, self.recorder = recordingContext(reactor, maxMessageSize=100)
        source = makeSource("stdin", context)
        assert isinstance(source, StdinSource)
        source.fileno = readEnd
        self.source = source

    def closeWriteEnd(self) -> None:
        if self.writeEnd >= 0:
            os.close(self.writeEnd)
            self.writeEnd = -1

    def start(self) -> None:
        self.source.startService()
        self.addCleanup(lambda: self.source.running and self.source.stopService())

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    @defer.inlineCallbacks
    def test_linesPublished(self):  # type: ignore[no-untyped-def]
        """
        Each line written to standard input is one message, whatever the
        writes.
        """
        self.start()
        os.write(self.writeEnd, b"one\ntw")
        os.write(self.writeEnd, b"o\r\nthree\n")
        yield waitFor(lambda: len(self.recorder.messages) == 3, 5, details=self.logLines)
        self.assertEqual(self.recorder.messages, [b"one", b"two", b"three"])

    @defer.inlineCallbacks
    def test_endOfInput(self):  # type: ignore[no-untyped-def]
        """
        At end of input the unfinished last line is published, the end is
        logged, the source keeps running, and the descriptor is blocking
        again.
        """
        self.start()
        os.write(self.writeEnd, b"line\nlast words")
        self.closeWriteEnd()
        yield waitFor(lambda: any("ended" in line for line in self.logLines()), 5, details=self.logLines)
        self.assertEqual(self.recorder.messages, [b"line", b"last words"])
        self.assertIn(
            "stdin: standard input ended (Connection was closed cleanly.); still serving", self.logLines()
        )
        self.assertTrue(self.source.running)
        self.assertFalse(fcntl.fcntl(self.source.fileno, fcntl.F_GETFL) & os.O_NONBLOCK)

    @defer.inlineCallbacks
    def test_pause(self):  # type: ignore[no-untyped-def]
        """
        While paused (block mode) nothing is read; on resume the lines written
        meanwhile are published.
        """
        self.start()
        self.source.pauseProducing()
        os.write(self.writeEnd, b"held\n")
        # Nothing read is no event: give the reactor a short while in which
        # it would have read the line were the source not paused.
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(self.recorder.messages, [])
        self.source.resumeProducing()
        yield waitFor(lambda: self.recorder.messages == [b"held"], 5, details=self.logLines)

    @defer.inlineCallbacks
    def test_binaryWithoutNewlines(self):  # type: ignore[no-untyped-def]
        """
        A megabyte with no newline publishes nothing, is logged as skipped,
        and the line after it is published.
        """
        self.start()
        blob = b"\x00\xff" * 512 * 1024

        def feed() -> None:
            os.write(self.writeEnd, blob + b"\nafter\n")

        # The pipe holds less than that: write from a thread while we read.
        reactor.callInThread(feed)  # type: ignore[attr-defined]
        yield waitFor(lambda: self.recorder.messages == [b"after"], 5, details=self.logLines)
        lines = self.logLines()
        self.assertIn(
            "stdin: a line of its standard input is over the 100-byte --max-message-size; skipping it up to the next newline",
            lines,
        )
        self.assertIn(
            "stdin: skipped a 1048576-byte line of its standard input, over the 100-byte --max-message-size",
            lines,
        )

    def test_stopRestoresBlocking(self) -> None:
        """
        Stopping stops reading and leaves the descriptor open and blocking, as
        a shell sharing a terminal expects.
        """
        self.start()
        self.assertTrue(fcntl.fcntl(self.source.fileno, fcntl.F_GETFL) & os.O_NONBLOCK)
        self.source.stopService()
        self.assertFalse(fcntl.fcntl(self.source.fileno, fcntl.F_GETFL) & os.O_NONBLOCK)

    def test_unreadable(self) -> None:
        """
        A standard input that is closed is logged, and the daemon goes on.
        """
        self.source.fileno = 987
        self.start()
        self.assertIn("stdin: cannot read standard input: Bad file descriptor", self.logLines())
        self.assertTrue(self.source.running)
