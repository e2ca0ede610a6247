"""
Real commands run by L{streamd.sources.exec}, and their process groups.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import defer, reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from streamd.sources import exec as execModule
from streamd.sources import makeSource
from streamd.sources.exec import ExecSource

from ..support import waitFor
from ..test_sources_lines import recordingContext


def pidGone(pid: int) -> bool:
    """
    Whether process C{pid} has ended: it no longer exists, or is a zombie
    that is not ours to reap (this sandbox's init may not reap orphans).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class RealProcessTests(TestCase):
    """
    Real commands, with short bounded waits.
    """

    timeout = 10

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]

    def start(self, spec: str, **settings: object) -> ExecSource:
        context, self.recorder = recordingContext(reactor, **settings)
        source = makeSource(spec, context)
        assert isinstance(source, ExecSource)
        source.startService()
        self.addCleanup(lambda: source.running and source.stopService())
        return source

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    @defer.inlineCallbacks
    def test_outputAndExit(self):  # type: ignore[no-untyped-def]
        """
        A real command's lines (CRLF or not, the last without a newline) are
        published, its stderr is logged, and its exit status is logged.
        """
        self.start("exec:sh -c 'printf \"one\\ntwo\\r\\nthree\"; echo oops >&2; exit 4'", restart=False)
        yield waitFor(
            lambda: any("not running it again" in line for line in self.logLines()), 5, details=self.logLines
        )
        self.assertEqual(self.recorder.messages, [b"one", b"two", b"three"])
        prefix = "exec:sh -c 'printf \"one\\ntwo\\r\\nthree\"; echo oops >&2; exit 4'"
        self.assertIn(f"{prefix} stderr: oops", self.logLines())
        self.assertIn(f"{prefix}: the command exited with status 4", self.logLines())

    @defer.inlineCallbacks
    def test_crashAndRestart(self):  # type: ignore[no-untyped-def]
        """
        A command that crashes is run again after --restart-delay, each run
        publishing its output.
        """
        self.start("sh:echo run; kill -SEGV $$", restartDelay=0.05)
        yield waitFor(lambda: len(self.recorder.messages) >= 3, 5, details=self.logLines)
        self.assertEqual(self.recorder.messages[:3], [b"run"] * 3)
        self.assertIn("sh:echo run; kill -SEGV $$: the command was killed by SIGSEGV", self.logLines())

    @defer.inlineCallbacks
    def test_stopLeavesNoProcess(self):  # type: ignore[no-untyped-def]
        """
        Stopping a long-running command ends it with SIGTERM; the Deferred
        fires once it is gone, reaped (no zombie).
        """
        source = self.start("exec:sleep 30")
        assert source.child is not None
        pid = source.child.pid
        assert pid is not None
        yield source.stopService()
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)

    @defer.inlineCallbacks
    def startAndStopGroup(self, spec: str, killGrace: float):  # type: ignore[no-untyped-def]
        """
        Start C{spec}, a shell that prints its pid and a background child's,
        stop it, and check that both are gone.
        """
        source = self.start(spec, killGrace=killGrace)
        yield waitFor(lambda: len(self.recorder.messages) == 2, 5, details=self.logLines)
        shell, child = (int(pid) for pid in self.recorder.messages)
        yield source.stopService()
        self.assertRaises(ProcessLookupError, os.kill, shell, 0)
        yield waitFor(lambda: pidGone(child), 1, details=self.logLines)

    @defer.inlineCallbacks
    def test_stubbornGroupKilled(self):  # type: ignore[no-untyped-def]
        """
        A shell that ignores SIGTERM, and a child of it in the background,
        get SIGKILL after the grace period; no process of the group is left.
        """
        yield self.startAndStopGroup("sh:trap '' TERM; echo $$; sleep 30 & echo $!; wait", killGrace=0.3)
        self.assertIn(
            "sh:trap '' TERM; echo $$; sleep 30 & echo $!; wait: the command was still running 0.3 s after SIGTERM; sent SIGKILL",
            self.logLines(),
        )

    @defer.inlineCallbacks
    def test_pipelineStopped(self):  # type: ignore[no-untyped-def]
        """
        Stopping C{sh:} with a pipeline stops every process in it with
        SIGTERM, well before the grace period.
        """
        yield self.startAndStopGroup("sh:echo $$; sleep 30 | sleep 31 & echo $!; wait", killGrace=5)
        self.assertFalse(any("SIGKILL" in line for line in self.logLines()))

    @defer.inlineCallbacks
    def test_sigpipeRestored(self):  # type: ignore[no-untyped-def]
        """
        The command does not inherit Python's ignored SIGPIPE: it can die of
        a closed pipe as it would when run from a shell.
        """
        if not os.path.exists("/proc/self/status"):
            self.skipTest("needs /proc")
        self.start("exec:grep SigIgn /proc/self/status", restart=False)
        yield waitFor(lambda: bool(self.recorder.messages), 5, details=self.logLines)
        ignored = int(self.recorder.messages[0].split()[1], 16)
        self.assertFalse(ignored & (1 << (signal.SIGPIPE - 1)))

    @defer.inlineCallbacks
    def test_programGoneAtRunTime(self):  # type: ignore[no-untyped-def]
        """
        A program that cannot be run when its turn comes is logged in one
        line, with status 127.
        """
        context, _ = recordingContext(reactor, restart=False)
        source = ExecSource(context, ("/nonexistent/program",))
        source.spec = "exec:/nonexistent/program"
        source.startService()
        self.addCleanup(lambda: source.running and source.stopService())
        yield waitFor(lambda: any("status 127" in line for line in self.logLines()), 5, details=self.logLines)
        self.assertIn(
            "exec:/nonexistent/program stderr: cannot run /nonexistent/program: No such file or directory",
            self.logLines(),
        )


class GroupTests(SynchronousTestCase):
    """
    Looking at process groups.
    """

    def test_ownGroupAlive(self) -> None:
        """
        The test runner's own process group is running.
        """
        self.assertTrue(execModule.groupAlive(os.getpgrp()))

    def test_noSuchGroup(self) -> None:
        """
        A group with no process is not alive, and signalling it says so
        rather than raising.
        """
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        self.assertFalse(execModule.groupAlive(pid))
        self.assertFalse(execModule.killGroup(pid, signal.SIGTERM))
