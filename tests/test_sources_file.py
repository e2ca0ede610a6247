"""
Tests for L{streamd.sources.follow}: following a real file in a temporary
directory, polled on a fake clock.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.sources import BadSourceSpec, makeSource, parseSource
from streamd.sources.follow import FileSource

from .test_sources_lines import recordingContext


class FileSourceTests(SynchronousTestCase):
    """
    C{file:PATH} behaves like C{tail -F}.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "app.log")
        self.clock = Clock()

    def start(self, **settings: object) -> FileSource:
        context, self.recorder = recordingContext(self.clock, **settings)
        source = makeSource(f"file:{self.path}", context)
        assert isinstance(source, FileSource)
        source.startService()
        self.addCleanup(lambda: source.running and source.stopService())
        return source

    def write(self, data: bytes, mode: str = "ab", path: str | None = None) -> None:
        with open(path or self.path, mode) as f:
            f.write(data)

    def poll(self) -> list[bytes]:
        """
        One poll interval; the messages published so far.
        """
        self.clock.advance(FileSource.pollInterval)
        return self.recorder.messages

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_parse(self) -> None:
        """
        C{file:} needs a path, and makes it absolute.
        """
        self.assertEqual(parseSource("file:x.log"), (FileSource, os.path.abspath("x.log")))
        self.assertIn("give a path", str(self.assertRaises(BadSourceSpec, parseSource, "file:")))

    def test_startsAtEnd(self) -> None:
        """
        What the file held before the source started is not published; each
        line added after is, at the next poll, without its newline.
        """
        self.write(b"old 1\nold 2\n")
        self.start()
        self.assertEqual(self.poll(), [])
        self.write(b"new 1\nnew 2\r\n")
        self.assertEqual(self.poll(), [b"new 1", b"new 2"])
        self.assertIn(f"file:{self.path}: following {self.path} from its end", self.logLines())

    def test_startsInsideALine(self) -> None:
        """
        A file whose last line is unfinished at the start gives no fragment of
        it: following starts with the next whole line.
        """
        self.write(b"old\nhalf a li")
        self.start()
        self.write(b"ne\nwhole\n")
        self.assertEqual(self.poll(), [b"whole"])

    def test_partialLineWaitsForItsEnd(self) -> None:
        """
        A line written in two parts is published once, whole.
        """
        self.write(b"")
        self.start()
        self.write(b"first ha")
        self.assertEqual(self.poll(), [])
        self.write(b"lf\n")
        self.assertEqual(self.poll(), [b"first half"])

    def test_waitsForFile(self) -> None:
        """
        A file that does not exist yet is waited for (logged once) and read
        from its start when it appears.
        """
        self.start()
        for _ in range(3):
            self.assertEqual(self.poll(), [])
        self.write(b"born\n")
        self.assertEqual(self.poll(), [b"born"])
        lines = self.logLines()
        self.assertEqual(lines.count(f"file:{self.path}: {self.path} does not exist; waiting for it"), 1)
        self.assertIn(f"file:{self.path}: following {self.path} from its start", lines)

    def test_rotation(self) -> None:
        """
        Rename-and-create rotation: lines written to the old file before the
        new one appears are read, then the new file is followed from its
        start; an unfinished last line of the old file is published.
        """
        self.write(b"")
        self.start()
        self.write(b"before\n")
        self.assertEqual(self.poll(), [b"before"])
        os.rename(self.path, self.path + ".1")
        self.write(b"late\n", path=self.path + ".1")
        self.assertEqual(self.poll(), [b"before", b"late"])
        self.write(b"unfinished", path=self.path + ".1")
        self.write(b"after\n")
        self.assertEqual(self.poll(), [b"before", b"late", b"unfinished", b"after"])
        self.write(b"more\n")
        self.assertEqual(self.poll()[-1], b"more")
        lines = self.logLines()
        self.assertIn(f"file:{self.path}: {self.path} was removed or renamed; waiting for a new one", lines)
        self.assertIn(f"file:{self.path}: {self.path} was replaced", lines)

    def test_rotationWithinOnePoll(self) -> None:
        """
        A rotation done between two polls loses nothing: the old file is read
        to its end before the new one.
        """
        self.write(b"")
        self.start()
        self.write(b"old\n")
        os.rename(self.path, self.path + ".1")
        self.write(b"new\n")
        self.assertEqual(self.poll(), [b"old", b"new"])

    def test_truncation(self) -> None:
        """
        A file truncated in place (copytruncate) is read again from its start,
        and an unfinished line from before is dropped.
        """
        self.write(b"")
        self.start()
        self.write(b"one\ntwo\nunfini")
        self.assertEqual(self.poll(), [b"one", b"two"])
        self.write(b"x\n", mode="wb")
        self.assertEqual(self.poll(), [b"one", b"two", b"x"])
        self.assertIn(
            f"file:{self.path}: {self.path} was truncated; reading it from its start", self.logLines()
        )

    def test_longLineSkipped(self) -> None:
        """
        A line over --max-message-size is skipped with a log line; the lines
        around it are published.
        """
        self.write(b"")
        self.start(maxMessageSize=10)
        self.write(b"short\n" + b"L" * 50 + b"\nok\n")
        self.assertEqual(self.poll(), [b"short", b"ok"])
        self.assertIn(
            f"file:{self.path}: skipped a 50-byte line of its file, over the 10-byte --max-message-size",
            self.logLines(),
        )

    def test_pause(self) -> None:
        """
        While paused (block mode) nothing is read; on resume, everything
        written meanwhile is published.
        """
        self.write(b"")
        source = self.start()
        source.pauseProducing()
        self.write(b"a\nb\n")
        self.assertEqual(self.poll(), [])
        source.resumeProducing()
        self.assertEqual(self.poll(), [b"a", b"b"])

    def test_readBudget(self) -> None:
        """
        A huge append is read a bounded amount per poll, and whole in the
        end.
        """
        self.write(b"")
        source = self.start()
        source.maxReadPerPoll = 100
        self.write(b"".join(b"line %03d\n" % i for i in range(50)))
        self.assertEqual(len(self.poll()), 11)
        for _ in range(5):
            self.poll()
        self.assertEqual(self.recorder.messages, [b"line %03d" % i for i in range(50)])

    def test_notARegularFile(self) -> None:
        """
        A directory at the path is not read (a FIFO would block the daemon);
        the source says why, once, and waits.
        """
        os.mkdir(self.path)
        self.start()
        self.poll()
        self.poll()
        self.assertEqual(
            self.logLines().count(f"file:{self.path}: {self.path} is not a regular file; waiting for one"), 1
        )

    def test_stopClosesFile(self) -> None:
        """
        Stopping stops polling and closes the file.
        """
        self.write(b"")
        source = self.start()
        fd = source._fd
        assert fd is not None
        source.stopService()
        self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(self.clock.getDelayedCalls(), [])
