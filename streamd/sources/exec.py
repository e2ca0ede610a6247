"""
The C{exec} and C{sh} sources: a command's standard output, one message per
line, with the command run again when it exits.

C{exec:COMMAND} splits COMMAND into words the way a POSIX shell would
(C{shlex.split}: quotes and backslashes work) and runs the program directly,
without a shell: no pipes, redirections, globs or variables.  C{sh:COMMAND}
hands COMMAND as one string to C{/bin/sh -c}, for when a shell is what you
want.

Each run of the command is the leader of a process group of its own, and
every signal goes to that whole group: stopping C{sh:vmstat 1 | grep -v procs}
stops vmstat and grep too, and nothing is left running.  A terminal's Ctrl-C
reaches only the daemon, which then stops its commands in order.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from streamd.printable import preview
from streamd.sources.base import SourceContext
from streamd.sources.lines import LineSource
from streamd.throttle import LogThrottle

# Runs the command as the leader of a new session (and so of a new process
# group), with the signals that Python ignores back to their defaults: a
# command must die of SIGPIPE as it would when run from a shell.
_LAUNCHER = """\
import os, signal, sys
os.setsid()
for name in ("SIGPIPE", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as e:
    sys.stderr.write(f"cannot run {sys.argv[1]}: {e.strerror}\\n")
    sys.exit(127)
"""

# How often to look whether a stopped command's process group is all gone.
_GROUP_POLL = 0.05


def killGroup(pgid: int, signum: int) -> bool:
    """
    Send C{signum} to process group C{pgid}.

    @return: whether the group exists (C{signum} 0 only checks that).
    """
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Someone else's processes: nothing we can stop or wait for.
        return False
    return True


def groupAlive(pgid: int) -> bool:
    """
    Whether a process of group C{pgid} is still running.

    Where C{/proc} tells, zombies do not count: they are dead, and waiting for
    a parent that is not ours to reap them (an init that does not reap, in
    some containers) would only delay the shutdown.
    """
    if not killGroup(pgid, 0):
        return False
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # After the command name: state, parent, process group.
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == b"%d" % pgid and fields[0] != b"Z":
            return True
    return False


def _describeExit(reason: Failure) -> str:
    """
    How a process ended, in words.
    """
    value = reason.value
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            try:
                name = signal.Signals(value.signal).name
            except ValueError:
                name = f"signal {value.signal}"
            return f"was killed by {name}"
        return f"exited with status {value.exitCode}"
    if isinstance(value, ProcessDone):
        return "exited with status 0"
    return f"ended: {reason.getErrorMessage()}"


# Restarts of a command that keeps exiting back off up to this many seconds;
# a run that lasted longer resets them.
RESTART_BACKOFF_CAP = 60.0


class ExecSource(LineSource):
    """
    Runs a command and publishes each line of its standard output; logs its
    standard error (rate-limited) and its exit; runs it again
    C{context.restartDelay} seconds after it exits, unless
    C{context.restart} is false; a command that keeps exiting within
    L{RESTART_BACKOFF_CAP} seconds of its start waits twice as long each
    time, up to that cap.

    Stopping the service sends SIGTERM to the command's process group, and
    SIGKILL C{context.killGrace} seconds later if it is still there; the
    Deferred it returns fires when the group is gone.
    """

    log = Logger()

    def __init__(self, context: SourceContext, argument: tuple[str, ...]) -> None:
        super().__init__(context, argument)
        self.argv = argument
        self.child: _Child | None = None
        self._children: set[_Child] = set()
        self._restartCall: IDelayedCall | None = None
        self._startedAt = 0.0
        self._quickExits = 0
        self._paused = False
        self._stderrThrottle = LogThrottle(context.reactor, self._reportStderr)

    @classmethod
    def parseArgument(cls, argument: str) -> tuple[str, ...]:
        try:
            argv = shlex.split(argument)
        except ValueError as e:
            raise ValueError(f"cannot split it into words: {e}") from None
        if not argv:
            raise ValueError("give a command, as in exec:vmstat 1")
        if shutil.which(argv[0]) is None:
            raise ValueError(f"no program {argv[0]!r} found (exec: runs no shell; sh:COMMAND does)")
        return tuple(argv)

    def startService(self) -> None:
        super().startService()
        self._spawn()

    def _spawn(self) -> None:
        self._restartCall = None
        self._startedAt = self.context.reactor.seconds()
        child = _Child(self)
        try:
            self.context.reactor.spawnProcess(
                child,
                sys.executable,
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, *self.argv],
                env=None,
            )
        except Exception:
            self.log.failure("{source}: cannot start the command", source=self.spec)
            self._scheduleRestart()
            return
        self.child = child
        self._children.add(child)
        child.gone.addBoth(self._childGone, child)
        if self._paused:
            child.transport.pauseProducing()
        self.log.info("{source}: started, pid {pid}", source=self.spec, pid=child.pid)

    def _childGone(self, result: object, child: _Child) -> None:
        self._children.discard(child)

    def childEnded(self, child: _Child, reason: Failure) -> None:
        """
        C{child} exited and its output is all read.
        """
        if child is self.child:
            self.child = None
        how = _describeExit(reason)
        if not self.running:
            self.log.info("{source}: stopped; the command {how}", source=self.spec, how=how)
            return
        if reason.check(ProcessDone):
            self.log.info("{source}: the command {how}", source=self.spec, how=how)
        else:
            self.log.warn("{source}: the command {how}", source=self.spec, how=how)
        self._scheduleRestart()

    def _scheduleRestart(self) -> None:
        if not self.running:
            return
        if not self.context.restart:
            self.log.info("{source}: not running it again (--no-restart)", source=self.spec)
            return
        if self.context.reactor.seconds() - self._startedAt > RESTART_BACKOFF_CAP:
            self._quickExits = 0
        self._quickExits += 1
        delay = self.context.restartDelay
        if self._quickExits == 1:
            self.log.info("{source}: running it again in {delay:g} s", source=self.spec, delay=delay)
        else:
            delay = min(RESTART_BACKOFF_CAP, max(delay, 1.0) * 2 ** (self._quickExits - 1))
            self.log.info(
                "{source}: running it again in {delay:g} s ({n} quick exits in a row)",
                source=self.spec,
                delay=delay,
                n=self._quickExits,
            )
        self._restartCall = self.context.reactor.callLater(delay, self._spawn)

    def logStderr(self, lines: list[bytes]) -> None:
        """
        Log lines the command wrote to its standard error.
        """
        for line in self._stderrThrottle.admit(lines):
            self.log.info("{source} stderr: {line}", source=self.spec, line=preview(line, 500))

    def _reportStderr(self, messages: int, size: int) -> None:
        self.log.info(
            "{source}: {messages} more stderr lines ({size} bytes) not logged one by one",
            source=self.spec,
            messages=messages,
            size=size,
        )

    def pauseProducing(self) -> None:
        self._paused = True
        if self.child is not None:
            self.child.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self.child is not None:
            self.child.transport.resumeProducing()

    def stopService(self) -> Any:
        super().stopService()
        if self._restartCall is not None and self._restartCall.active():
            self._restartCall.cancel()
        self._restartCall = None
        children = list(self._children)
        if not children:
            self._stopThrottles()
            return None
        for child in children:
            child.stop()
        # What the command writes while it stops is still published and
        # logged; the log summaries end once it is gone.
        return gatherResults([child.gone for child in children]).addCallback(self._stopThrottles)

    def _stopThrottles(self, result: object = None) -> None:
        self._stderrThrottle.stop()
        self._skipNotes.stop()


class ShellSource(ExecSource):
    """
    Runs its argument through C{/bin/sh -c}: pipes, redirections and
    variables work, with the shell's quoting rules.
    """

    @classmethod
    def parseArgument(cls, argument: str) -> tuple[str, ...]:
        if not argument.strip():
            raise ValueError("give a shell command, as in sh:vmstat 1 | grep -v procs")
        return ("/bin/sh", "-c", argument)


class _Child(ProcessProtocol):
    """
    One run of an L{ExecSource}'s command.

    @ivar gone: fires once the process and every process left in its group
        are gone (or, for a group that ignored SIGTERM, have been sent
        SIGKILL).
    """

    transport: Any
    pid: int | None = None

    def __init__(self, source: ExecSource) -> None:
        self.source = source
        self.stdout = source.lineSplitter("standard output")
        self.stderr = source.lineSplitter("standard error")
        self.gone: Deferred[None] = Deferred()
        self._ended = False
        self._killCall: IDelayedCall | None = None
        self._pollCall: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.source.publishLines(self.stdout.feed(data))
        elif childFD == 2:
            self.source.logStderr(self.stderr.feed(data))

    def processExited(self, reason: Failure) -> None:
        if self._killCall is None and self.pid is not None and groupAlive(self.pid):
            self.source.log.info(
                "{source}: the command left processes behind in its group; stopping them",
                source=self.source.spec,
            )
            self.terminate()

    def processEnded(self, reason: Failure) -> None:
        self.source.publishLines(self.stdout.finish())
        self.source.logStderr(self.stderr.finish())
        self._ended = True
        self.source.childEnded(self, reason)
        self._checkGone()

    def stop(self) -> None:
        """
        Stop the command: read what it still writes, whatever block mode says,
        so that its end is seen.
        """
        if not self._ended:
            self.transport.resumeProducing()
        self.terminate()

    def terminate(self) -> None:
        """
        Send SIGTERM to the command's group, and SIGKILL after the grace
        period if anything is left.
        """
        if self._killCall is not None or self.pid is None:
            return
        self._signal(signal.SIGTERM)
        clock = self.source.context.reactor
        self._killCall = clock.callLater(self.source.context.killGrace, self._kill)

    def _signal(self, signum: int) -> bool:
        assert self.pid is not None
        if killGroup(self.pid, signum):
            return True
        # Between fork and setsid the command has no group of its own yet.
        if self.transport.pid is not None:
            try:
                self.transport.signalProcess(signum)
            except ProcessExitedAlready:
                return False
            return True
        return False

    def _kill(self) -> None:
        assert self.pid is not None
        stillThere = self.transport.pid is not None or groupAlive(self.pid)
        if stillThere and self._signal(signal.SIGKILL):
            self.source.log.warn(
                "{source}: the command was still running {grace:g} s after SIGTERM; sent SIGKILL",
                source=self.source.spec,
                grace=self.source.context.killGrace,
            )
        # Whatever still holds its output has left the group: stop waiting.
        if not self._ended:
            self.transport.loseConnection()
        self._checkGone()

    def _checkGone(self) -> None:
        self._pollCall = None
        if not self._ended or self.gone.called:
            return
        waiting = self._killCall is not None and self._killCall.active()
        if waiting and self.pid is not None and groupAlive(self.pid):
            self._pollCall = self.source.context.reactor.callLater(_GROUP_POLL, self._checkGone)
            return
        if waiting:
            assert self._killCall is not None
            self._killCall.cancel()
        self.gone.callback(None)
