"""
C{--data-dir} under a real C{twistd -n streamd}: C{kill -9} under a steady
acknowledged publisher and two resuming subscribers loses nothing and
repeats nothing; a torn tail is cut and the rest served; a full disk (the
file size limit, C{ulimit -f}, which needs no root) refuses publishers with
a reason while readers are still served.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from ..support import ENV, TwistdProcess, spawnPython, spawnTwistd, twistd, waitFor

LINES = 20_000


class Client(ProcessProtocol):
    """
    A C{python -m streamd.client --framing seq} process: what it printed,
    and its end.
    """

    def __init__(self, stdin: bytes | None = None) -> None:
        self.out = b""
        self.err = b""
        self.stdin = stdin
        self.status: Any = None
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self.stdin is not None:
            self.transport.write(self.stdin)  # type: ignore[union-attr]
            self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.status = reason.value
        self.ended.callback(None)

    @property
    def lines(self) -> list[bytes]:
        return self.out[: self.out.rfind(b"\n") + 1].splitlines()


def killing(transport: Any, ended: Deferred[Any]) -> Callable[[], Deferred[Any]]:
    """
    A cleanup that kills the process of C{transport} if it still runs,
    and waits until it has ended (C{ended}).
    """

    def kill() -> Deferred[Any]:
        if not ended.called:
            transport.signalProcess("KILL")
        return ended

    return kill


def freePort() -> int:
    """
    A loopback port nothing listens on now, for a daemon that must come
    back on the same port.
    """
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port: int = holder.getsockname()[1]
    holder.close()
    return port


class DurableDaemonTests(TestCase):
    """
    A daemon with a data directory, killed and started again.
    """

    timeout = 180

    def setUp(self) -> None:
        self.dataDir = tempfile.mkdtemp(prefix="streamd-data-")
        self.addCleanup(shutil.rmtree, self.dataDir)
        self.port = freePort()

    def daemon(self, *argv: str) -> TwistdProcess:
        return spawnTwistd(
            self,
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1:framing=seq",
            "--source",
            "none",
            "--data-dir",
            self.dataDir,
            *argv,
        )

    def client(self, *argv: str, stdin: bytes | None = None) -> Client:
        return spawnPython(self, ("-m", "streamd.client", "--framing", "seq", "--port", str(self.port), *argv), Client(stdin))

    @inlineCallbacks
    def test_killNine(self) -> Any:
        """
        C{kill -9} while a publisher sends acknowledged lines and two
        subscribers resume: after the restart the publisher exits 0 (every
        line acknowledged) and each subscriber got every line once, in
        order, numbered 1 to N, with no GAP.
        """
        daemon = self.daemon()
        yield daemon.listening
        readers = [self.client("--resume", "--show-seq") for _ in range(2)]
        yield waitFor(lambda: daemon.output.count(b"connected (") >= 2, 60)
        lines = b"".join(b"%d\n" % n for n in range(1, LINES + 1))
        publisher = self.client("--resume", "--stdin", stdin=lines)
        yield waitFor(lambda: len(readers[0].lines) >= LINES // 4, 60, lambda: readers[0].err)
        daemon.transport.signalProcess("KILL")  # type: ignore[union-attr]
        yield daemon.ended
        self.assertLess(len(readers[0].lines), LINES)
        again = self.daemon()
        yield again.listening
        yield waitFor(lambda: publisher.status is not None, 120, lambda: publisher.err)
        self.assertEqual(publisher.status.exitCode, 0, publisher.err)
        for reader in readers:
            yield waitFor(lambda r=reader: len(r.lines) >= LINES, 60, lambda r=reader: (len(r.lines), r.err))
            expected = [b"%d %d" % (n, n) for n in range(1, LINES + 1)]
            self.assertEqual(reader.lines, expected)
            self.assertNotIn(b"missed", reader.err)

    @inlineCallbacks
    def test_tornTail(self) -> Any:
        """
        A last segment a few bytes short loses its last record alone (the
        second publisher's one line): one log line says so, and the rest is
        served.
        """
        daemon = self.daemon()
        yield daemon.listening
        for lines in (range(1, 10), range(10, 11)):
            publisher = self.client("--resume", "--stdin", stdin=b"".join(b"line %d\n" % n for n in lines))
            yield waitFor(lambda p=publisher: p.status is not None, 60, lambda p=publisher: p.err)
        daemon.transport.signalProcess("KILL")  # type: ignore[union-attr]
        yield daemon.ended
        segment = os.path.join(self.dataDir, "streams", "default", "00000000000000000001.log")
        os.truncate(segment, os.path.getsize(segment) - 3)
        again = self.daemon()
        yield again.listening
        self.assertEqual(again.output.count(b"torn or corrupt record"), 1, again.output)
        reader = self.client("--last", "100", "--count", "9", "--show-seq")
        yield waitFor(lambda: reader.status is not None, 60, lambda: reader.err)
        self.assertEqual(reader.lines, [b"%d line %d" % (n, n) for n in range(1, 10)])

    @inlineCallbacks
    def test_fullDisk(self) -> Any:
        """
        Under a file size limit the log cannot grow past: one log line,
        the publisher told DISK_FULL (and not acknowledged for what was not
        written), and a reader still served everything that was.
        """
        daemon = TwistdProcess()
        command = twistd(
            "-n",
            "--pidfile=",
            "streamd",
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1:framing=seq",
            "--source",
            "none",
            "--data-dir",
            self.dataDir,
        )
        limited = ("/bin/sh", "-c", 'ulimit -f 256 && exec "$@"', "sh", sys.executable, *command)
        transport = reactor.spawnProcess(daemon, "/bin/sh", limited, env=ENV)
        self.addCleanup(killing(transport, daemon.ended))
        yield daemon.listening
        line = b"x" * 200
        lines = b"".join(b"%d %s\n" % (n, line) for n in range(1, 5001))
        publisher = self.client("--resume", "--stdin", stdin=lines)
        yield waitFor(lambda: b"no room on disk" in daemon.output, 60, lambda: daemon.output)
        yield waitFor(lambda: b"no room on the daemon's disk" in publisher.err, 60, lambda: publisher.err)
        self.assertIsNone(publisher.status)
        reader = self.client("--last", "100000", "--show-seq", "--timeout", "30")
        yield waitFor(lambda: len(reader.lines) > 100, 60, lambda: reader.err)
        self.assertEqual(daemon.output.count(b"no room on disk"), 1)
        self.assertNotIn(b"Traceback", daemon.output)
        count = len(reader.lines)
        yield waitFor(lambda: len(reader.lines) == count and b"Traceback" not in daemon.output, 5)
        self.assertEqual(reader.lines, [b"%d %d %s" % (n, n, line) for n in range(1, len(reader.lines) + 1)])
        self.assertLess(len(reader.lines), 5000)
