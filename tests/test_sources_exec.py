"""
Tests for L{streamd.sources.exec}: a command's output as messages, its
restarts, and its end, on a fake reactor; with real processes in
L{tests.integration.test_sources_exec}.
"""

from __future__ import annotations

import signal
import sys
from itertools import count
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.sources import BadSourceSpec, makeSource, parseSource
from streamd.sources import exec as execModule
from streamd.sources.exec import ExecSource, ShellSource, _Child

from .test_sources_lines import recordingContext


class FakeProcess:
    """
    The transport of a spawned process, recording what is done to it.
    """

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid
        self.paused = False
        self.stdinClosed = False
        self.lost = False
        self.signals: list[int] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def closeStdin(self) -> None:
        self.stdinClosed = True

    def signalProcess(self, signum: int) -> None:
        self.signals.append(signum)

    def loseConnection(self) -> None:
        self.lost = True


class ProcessReactor(MemoryReactorClock):
    """
    A memory reactor that pretends to spawn processes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[_Child, list[str], FakeProcess]] = []
        self._pids = count(1000)

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any = None) -> FakeProcess:
        process = FakeProcess(next(self._pids))
        self.spawned.append((protocol, args, process))
        protocol.makeConnection(process)
        return process


def exited(code: int | None = 0, signum: int | None = None) -> Failure:
    """
    The reason Twisted gives a process protocol for an exit.
    """
    if code == 0 and signum is None:
        return Failure(ProcessDone(0))
    return Failure(ProcessTerminated(code, signum))


class ParseTests(SynchronousTestCase):
    """
    How C{exec:} and C{sh:} arguments become a command.
    """

    def test_execSplitsLikeAShell(self) -> None:
        """
        C{exec:} splits its argument into words with shell quoting rules and
        no shell: quotes group, and C{|} is just a word.
        """
        kind, argv = parseSource("exec:echo 'a b' \"c d\" e\\ f | x")
        self.assertIs(kind, ExecSource)
        self.assertEqual(argv, ("echo", "a b", "c d", "e f", "|", "x"))

    def test_shHandsTheStringToTheShell(self) -> None:
        """
        C{sh:} runs its argument, untouched, with C{/bin/sh -c}.
        """
        kind, argv = parseSource("sh:vmstat 1 | grep -v 'procs'")
        self.assertIs(kind, ShellSource)
        self.assertEqual(argv, ("/bin/sh", "-c", "vmstat 1 | grep -v 'procs'"))

    def test_mistakes(self) -> None:
        """
        An empty command, unbalanced quotes and a program that cannot be
        found are refused with a message for the command line.
        """
        for spec, message in [
            ("exec:", "give a command, as in exec:vmstat 1"),
            ("exec:  ", "give a command"),
            ("exec:echo 'a", "cannot split it into words: No closing quotation"),
            (
                "exec:no-such-program-here -x",
                "no program 'no-such-program-here' found (exec: runs no shell; sh:COMMAND does)",
            ),
            ("sh: ", "give a shell command"),
        ]:
            error = self.assertRaises(BadSourceSpec, parseSource, spec)
            self.assertIn(message, str(error))


class ExecSourceTests(SynchronousTestCase):
    """
    The life of a command, driven by hand on a fake reactor and a fake
    process group.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.reactor = ProcessReactor()
        self.alive: set[int] = set()
        self.groupSignals: list[tuple[int, int]] = []
        self.patch(execModule, "killGroup", self.killGroup)
        self.patch(execModule, "groupAlive", self.alive.__contains__)

    def killGroup(self, pgid: int, signum: int) -> bool:
        if signum:
            self.groupSignals.append((pgid, signum))
        return pgid in self.alive

    def start(self, spec: str = "exec:echo hello", **settings: object) -> ExecSource:
        context, self.recorder = recordingContext(self.reactor, **settings)
        source = makeSource(spec, context)
        assert isinstance(source, ExecSource)
        source.startService()
        return source

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def child(self, index: int = -1) -> tuple[_Child, FakeProcess]:
        protocol, _, process = self.reactor.spawned[index]
        return protocol, process

    def end(self, reason: Failure, index: int = -1) -> None:
        """
        Make the command exit the way Twisted reports it: reaped (pid gone),
        then its output closed.
        """
        protocol, process = self.child(index)
        process.pid = None
        self.alive.discard(protocol.pid or 0)
        protocol.processExited(reason)
        protocol.processEnded(reason)

    def test_spawnsThroughLauncher(self) -> None:
        """
        The command runs under this Python's launcher (which makes it a
        process group leader) with its words as they were split, and its
        standard input closed at once.
        """
        self.start("exec:sleep 1")
        ((_, args, process),) = self.reactor.spawned
        self.assertEqual(args[:2], [sys.executable, "-I"])
        self.assertEqual(args[-2:], ["sleep", "1"])
        self.assertIn("os.setsid()", args[args.index("-c") + 1])
        self.assertTrue(process.stdinClosed)
        self.assertIn("exec:sleep 1: started, pid 1000", self.logLines())

    def test_stdoutLinesPublished(self) -> None:
        """
        Each line of standard output is one message; a last line without a
        newline is published when the command ends.
        """
        self.start()
        protocol, _ = self.child()
        protocol.childDataReceived(1, b"one\r\ntw")
        protocol.childDataReceived(1, b"o\nthree")
        self.assertEqual(self.recorder.messages, [b"one", b"two"])
        self.end(exited())
        self.assertEqual(self.recorder.messages, [b"one", b"two", b"three"])

    def test_stderrLoggedNotPublished(self) -> None:
        """
        Standard error lines go to the log with the source's name, not to
        clients, and a flood of them is summarised.
        """
        source = self.start()
        protocol, _ = self.child()
        protocol.childDataReceived(2, b"warning: disk\n" + b"noise\n" * 30)
        self.assertEqual(self.recorder.messages, [])
        lines = self.logLines()
        self.assertIn("exec:echo hello stderr: warning: disk", lines)
        self.assertEqual(len([line for line in lines if " stderr: " in line]), 10)
        self.reactor.advance(1)
        self.assertIn(
            "exec:echo hello: 21 more stderr lines (105 bytes) not logged one by one", self.logLines()
        )
        source.stopService()

    def test_restartAfterDelay(self) -> None:
        """
        A command that exits is logged with its status and run again exactly
        --restart-delay seconds later.
        """
        self.start(restartDelay=2.5)
        self.end(exited(3))
        self.assertIn("exec:echo hello: the command exited with status 3", self.logLines())
        self.assertIn("exec:echo hello: running it again in 2.5 s", self.logLines())
        self.reactor.advance(2.4)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_quickExitsBackOff(self) -> None:
        """
        A command that keeps exiting at once (even with --restart-delay 0)
        is run again after 0, 2, 4, 8, ... seconds, never more than 60, and
        each restart line says how many quick exits there were; a run longer
        than 60 seconds starts the count again.
        """
        self.start(restartDelay=0)
        delays = []
        for run in range(8):
            self.end(exited(1))
            ended = self.reactor.seconds()
            while len(self.reactor.spawned) == run + 1:
                due = min(call.getTime() for call in self.reactor.getDelayedCalls())
                self.reactor.advance(due - self.reactor.seconds())
            delays.append(self.reactor.seconds() - ended)
        self.assertEqual(delays, [0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0])
        self.assertIn("exec:echo hello: running it again in 60 s (8 quick exits in a row)", self.logLines())
        self.reactor.advance(61)
        self.end(exited(1))
        self.assertEqual(self.logLines()[-1], "exec:echo hello: running it again in 0 s")

    def test_killedBySignalLogged(self) -> None:
        """
        A command killed by a signal is logged with the signal's name.
        """
        self.start()
        self.end(exited(None, signal.SIGSEGV))
        self.assertIn("exec:echo hello: the command was killed by SIGSEGV", self.logLines())

    def test_noRestart(self) -> None:
        """
        With --no-restart, a command that exits is not run again, and the log
        says so.
        """
        self.start(restart=False)
        self.end(exited())
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertIn("exec:echo hello: not running it again (--no-restart)", self.logLines())

    def test_pauseReachesEveryRun(self) -> None:
        """
        Block mode pauses reading the command's output; a run started while
        paused starts paused; resuming resumes it.
        """
        source = self.start(restartDelay=1)
        source.pauseProducing()
        self.assertTrue(self.child()[1].paused)
        self.end(exited(1))
        self.reactor.advance(1)
        self.assertTrue(self.child()[1].paused)
        source.resumeProducing()
        self.assertFalse(self.child()[1].paused)

    def test_stopWaitsForExit(self) -> None:
        """
        Stopping sends SIGTERM to the command's process group and fires only
        once the command has ended and its group is gone; what it writes
        meanwhile is still published and logged, and nothing is left
        scheduled.
        """
        source = self.start()
        protocol, _ = self.child()
        self.alive.add(1000)
        stopped = source.stopService()
        self.assertEqual(self.groupSignals, [(1000, signal.SIGTERM)])
        self.assertNoResult(stopped)
        protocol.childDataReceived(1, b"last words\n")
        protocol.childDataReceived(2, b"bye\n" * 12)
        self.end(exited(None, signal.SIGTERM))
        self.successResultOf(stopped)
        self.assertEqual(self.recorder.messages, [b"last words"])
        self.assertIn("exec:echo hello: 2 more stderr lines (6 bytes) not logged one by one", self.logLines())
        self.assertIn("exec:echo hello: stopped; the command was killed by SIGTERM", self.logLines())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stopWhilePausedReadsToTheEnd(self) -> None:
        """
        A command stopped while block mode has paused it is read again, so
        that its end can be seen.
        """
        source = self.start()
        source.pauseProducing()
        source.stopService()
        self.assertFalse(self.child()[1].paused)

    def test_killAfterGrace(self) -> None:
        """
        A group still there --kill-grace seconds after SIGTERM gets SIGKILL,
        with a warning, and the source stops waiting for output held by
        anything outside the group.
        """
        source = self.start(killGrace=3)
        _, process = self.child()
        self.alive.add(1000)
        stopped = source.stopService()
        self.reactor.advance(2.9)
        self.assertEqual(self.groupSignals, [(1000, signal.SIGTERM)])
        self.reactor.advance(0.1)
        self.assertEqual(self.groupSignals, [(1000, signal.SIGTERM), (1000, signal.SIGKILL)])
        self.assertTrue(process.lost)
        self.assertIn(
            "exec:echo hello: the command was still running 3 s after SIGTERM; sent SIGKILL", self.logLines()
        )
        self.assertNoResult(stopped)
        self.end(exited(None, signal.SIGKILL))
        self.successResultOf(stopped)

    def test_leftoversInGroupStopped(self) -> None:
        """
        When the command exits but leaves processes in its group, they get
        SIGTERM; the command still runs again after the delay; stopping waits
        for the leftovers, up to SIGKILL.
        """
        source = self.start(killGrace=5, restartDelay=1)
        protocol, process = self.child()
        process.pid = None
        self.alive.add(1000)
        protocol.processExited(exited())
        self.assertEqual(self.groupSignals, [(1000, signal.SIGTERM)])
        protocol.processEnded(exited())
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.end(exited())
        stopped = source.stopService()
        self.assertNoResult(stopped)
        self.reactor.advance(4)
        self.assertEqual(self.groupSignals[-1], (1000, signal.SIGKILL))
        self.successResultOf(stopped)

    def test_leftoversGoneEarly(self) -> None:
        """
        Stopping fires as soon as the leftovers in the group are seen to be
        gone, without waiting for the grace period.
        """
        source = self.start(killGrace=5)
        protocol, process = self.child()
        self.alive.add(1000)
        stopped = source.stopService()
        process.pid = None
        protocol.processExited(exited(None, signal.SIGTERM))
        protocol.processEnded(exited(None, signal.SIGTERM))
        self.assertNoResult(stopped)
        self.alive.clear()
        self.reactor.advance(0.05)
        self.successResultOf(stopped)
        self.assertEqual(self.groupSignals, [(1000, signal.SIGTERM)])

    def test_stopCancelsRestart(self) -> None:
        """
        Stopping between two runs cancels the next one and has nothing to
        wait for.
        """
        source = self.start(restartDelay=1)
        self.end(exited(1))
        self.assertIsNone(source.stopService())
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_signalBeforeSetsid(self) -> None:
        """
        A command that has no group of its own yet (between fork and setsid)
        is signalled directly.
        """
        source = self.start()
        _, process = self.child()
        source.stopService()
        self.assertEqual(process.signals, [signal.SIGTERM])
