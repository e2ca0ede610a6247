"""
The daemon's life as twistd runs it, as a real process: starting, failing
to start, signals, and token files after twistd drops privileges.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import sys
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from ..support import ENV, daemonRunning, readFile, takenPort, twistd, waitFor
from ..test_daemon import _tokenFile


class TwistdDaemonTests(TestCase):
    """
    C{twistd streamd} as a real process, daemonised and in the foreground.
    """

    timeout = 30

    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp()
        self.pidfile = os.path.join(self.workdir, "streamd.pid")
        self.logfile = os.path.join(self.workdir, "streamd.log")
        self.addCleanup(self._killLeftover)

    def _killLeftover(self) -> None:
        pid = readFile(self.pidfile).strip()
        if pid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def daemonise(self, *argv: str) -> Any:
        """
        Run C{twistd --pidfile --logfile streamd ARGV} (which daemonises):
        its output, error output and the status of the waiting parent.
        """
        command = twistd("--pidfile", self.pidfile, "--logfile", self.logfile, "streamd", *argv)
        return getProcessOutputAndValue(sys.executable, command, env=ENV, path=self.workdir)

    def log(self) -> str:
        return readFile(self.logfile)

    @defer.inlineCallbacks
    def test_startFailsDaemonised(self):  # type: ignore[no-untyped-def]
        """
        A daemonising twistd whose port is taken ends with status 1 and one
        line on stderr naming the address and the reason, without a bytes
        repr, leaving no pidfile: it listens before it forks.
        """
        port = takenPort(self)
        out, err, code = yield self.daemonise("--port", str(port))
        self.assertEqual(
            (code, out, err.decode()),
            (1, b"", f"streamd: cannot listen on 127.0.0.1:{port}: Address already in use\n"),
        )
        self.assertFalse(os.path.exists(self.pidfile))

    @defer.inlineCallbacks
    def test_startFailsForeground(self):  # type: ignore[no-untyped-def]
        """
        With C{-n} too, a taken port ends twistd with status 1, one line and
        no traceback, and removes the pidfile.
        """
        port = takenPort(self)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            twistd("-n", "--pidfile", self.pidfile, "streamd", "--port", str(port)),
            env=ENV,
            path=self.workdir,
        )
        self.assertEqual(code, 1, err)
        output = (out + err).decode()
        message = f"streamd: cannot listen on 127.0.0.1:{port}: Address already in use"
        self.assertEqual(len([line for line in output.splitlines() if message in line]), 1, output)
        self.assertNotIn("Traceback", output)
        self.assertFalse(os.path.exists(self.pidfile))

    @defer.inlineCallbacks
    def test_hangupWithoutTokens(self):  # type: ignore[no-untyped-def]
        """
        SIGHUP to a daemon without token files (what logrotate and
        C{systemctl reload} send) leaves it running; SIGTERM then shuts it
        down in order: final counters, "Server Shut Down.", pidfile removed.
        """
        out, err, code = yield self.daemonise("--port", "0")
        self.assertEqual(code, 0, err)
        yield daemonRunning(self.log)
        pid = int(readFile(self.pidfile))
        os.kill(pid, signal.SIGHUP)
        yield waitFor(lambda: "SIGHUP: no token files to reload" in self.log())
        os.kill(pid, signal.SIGTERM)
        yield waitFor(lambda: not os.path.exists(self.pidfile))
        self.assertIn("stats: connections=0", self.log())
        self.assertIn("Server Shut Down.", self.log())

    @defer.inlineCallbacks
    def test_reloadAfterPrivilegeDrop(self):  # type: ignore[no-untyped-def]
        """
        The production set-up of C{docs/security.rst}: twistd started as root with C{-u}/C{-g},
        token files owned by root.  One readable by root only is named in a
        warning at start; once both are root-owned and readable by the
        daemon's group (640), SIGHUP reloads them.
        """
        if os.geteuid() != 0:
            raise self.skipTest("needs root to drop privileges (CI runs as root)")
        user = pwd.getpwnam("nobody")
        group = grp.getgrgid(user.pw_gid)
        os.chown(self.workdir, user.pw_uid, user.pw_gid)
        os.chmod(self.workdir, 0o755)
        reader = _tokenFile(self.workdir, "read.token", b"old-reader")
        publisher = _tokenFile(self.workdir, "publish.token", b"old-publisher")
        os.chown(reader, 0, group.gr_gid)
        os.chmod(reader, 0o640)
        os.chmod(publisher, 0o600)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            twistd(
                "--pidfile", self.pidfile, "--logfile", self.logfile,
                "-u", user.pw_name, "-g", group.gr_name,
                "streamd", "--port", "0",
                "--auth-token-file", reader, "--publish-token-file", publisher,
            ),
            env=ENV,
            path=self.workdir,
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        yield daemonRunning(self.log, "old-reader")
        self.assertIn(f"token file {publisher} is not readable by uid {user.pw_uid}", self.log())
        self.assertNotIn(f"token file {reader} is not readable", self.log())
        os.chown(publisher, 0, group.gr_gid)
        os.chmod(publisher, 0o640)
        _tokenFile(self.workdir, "read.token", b"new-reader")
        os.kill(int(readFile(self.pidfile)), signal.SIGHUP)
        yield waitFor(lambda: f"reloaded token file(s): {reader}, {publisher}" in self.log())
        self.assertNotIn("Permission denied", self.log())
