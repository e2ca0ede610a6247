"""
C{twistd streamd} with live sources, as a real process.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from streamd.client import StreamClientProtocol, connect

from ..support import TwistdProcess, spawnTwistd
from .test_sources_exec import pidGone


class Collector:
    """
    Collects messages; L{until} fires once there are C{count}.
    """

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._waiting: list[tuple[int, defer.Deferred[list[bytes]]]] = []

    def __call__(self, payload: bytes) -> None:
        self.messages.append(payload)
        for entry in list(self._waiting):
            if len(self.messages) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(self.messages)

    def until(self, count: int) -> defer.Deferred[list[bytes]]:
        if len(self.messages) >= count:
            return defer.succeed(self.messages)
        d: defer.Deferred[list[bytes]] = defer.Deferred()
        self._waiting.append((count, d))
        return d


class TwistdSourceTests(TestCase):
    """
    C{twistd -n streamd} with live sources, as a user runs it.
    """

    timeout = 20

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.socket = os.path.join(self.directory, "streamd.sock")

    def spawn(self, *argv: str) -> tuple[TwistdProcess, object]:
        daemon = spawnTwistd(self, "--listen", f"unix:{self.socket}", *argv)
        return daemon, daemon.transport

    @defer.inlineCallbacks
    def connect(self, daemon: TwistdProcess):  # type: ignore[no-untyped-def]
        yield daemon.listening
        collector = Collector()
        client: StreamClientProtocol = yield connect(reactor, f"unix:path={self.socket}", collector)
        self.addCleanup(lambda: client.transport.loseConnection() or client.finished)
        # The daemon has seen the connection once it logs it.
        yield daemon.logged(b"connected (1 connected)")
        return collector

    @defer.inlineCallbacks
    def test_stdin(self):  # type: ignore[no-untyped-def]
        """
        C{some-program | twistd -n streamd --source stdin}: each line piped in
        is one message; at the end of input the daemon says so and goes on.
        """
        daemon, transport = self.spawn("--source", "stdin")
        collector = yield self.connect(daemon)
        transport.write(b"hello\r\nworld\nno newline")  # type: ignore[attr-defined]
        transport.closeStdin()  # type: ignore[attr-defined]
        messages = yield collector.until(3)
        self.assertEqual(messages, [b"hello", b"world", b"no newline"])
        yield daemon.logged(b"stdin: standard input ended")
        self.assertFalse(daemon.ended.called)
        transport.signalProcess("TERM")  # type: ignore[attr-defined]
        yield daemon.ended

    @defer.inlineCallbacks
    def test_followRotatedFile(self):  # type: ignore[no-untyped-def]
        """
        C{--source file:PATH} streams lines appended to a log file, and goes
        on after logrotate-style rotation (rename, create).
        """
        log = os.path.join(self.directory, "app.log")
        with open(log, "w") as f:
            f.write("old line\n")
        daemon, transport = self.spawn("--source", f"file:{log}")
        collector = yield self.connect(daemon)
        with open(log, "a") as f:
            f.write("first\n")
        yield collector.until(1)
        os.rename(log, log + ".1")
        with open(log, "w") as f:
            f.write("after rotation\n")
        messages = yield collector.until(2)
        self.assertEqual(messages, [b"first", b"after rotation"])
        transport.signalProcess("TERM")  # type: ignore[attr-defined]
        yield daemon.ended

    @defer.inlineCallbacks
    def test_execStoppedWithDaemon(self):  # type: ignore[no-untyped-def]
        """
        C{--source exec:...} streams a command's lines to clients; stopping
        the daemon stops the command, which is not left running.
        """
        daemon, transport = self.spawn("--source", "exec:sh -c 'while :; do echo $$; sleep 0.05; done'")
        collector = yield self.connect(daemon)
        messages = yield collector.until(2)
        pid = int(messages[0])
        self.assertEqual(set(messages), {messages[0]})
        transport.signalProcess("TERM")  # type: ignore[attr-defined]
        yield daemon.ended
        self.assertTrue(pidGone(pid))
        self.assertTrue(
            re.search(rb"stopped; the command was killed by SIGTERM", daemon.output), daemon.output
        )

    @defer.inlineCallbacks
    def test_noRestart(self):  # type: ignore[no-untyped-def]
        """
        With --no-restart, a command that exits is logged and not run again;
        the daemon keeps serving.
        """
        daemon, transport = self.spawn("--source", "sh:exit 2", "--no-restart", "--restart-delay", "0")
        yield daemon.logged(b"sh:exit 2: not running it again (--no-restart)")
        self.assertIn(b"sh:exit 2: the command exited with status 2", daemon.output)
        # A run that does not happen logs nothing to wait for; with
        # --restart-delay 0 it would have started at once, so a short wait
        # is enough to see one.
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(daemon.output.count(b"started, pid"), 1)
        self.assertFalse(daemon.ended.called)
        transport.signalProcess("TERM")  # type: ignore[attr-defined]
        yield daemon.ended
