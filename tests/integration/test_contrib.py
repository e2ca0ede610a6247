"""
The systemd units in C{contrib/}: they pass C{systemd-analyze verify}, and
the socket-activated command line serves the stream on the socket it is
handed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from streamd.client import connect
from streamd.config import ServerConfig
from streamd.listen.descriptors import RESERVE

from ..support import ENV, TwistdProcess, twistd
from .test_integration import Collector

CONTRIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "contrib")
DROPIN = os.path.join("streamd.service.d", "socket-activation.conf")
INSTALLED_TWISTD = "/opt/streamd/.venv/bin/twistd"


def execStart(path: str) -> list[str]:
    """
    The words of the last non-empty C{ExecStart=} line of a unit file.
    """
    with open(path) as f:
        lines = [line.strip() for line in f if line.startswith("ExecStart=")]
    commands = [line.removeprefix("ExecStart=") for line in lines if line != "ExecStart="]
    return shlex.split(commands[-1])


class SystemdUnitTests(SynchronousTestCase):
    """
    C{systemd-analyze verify} finds nothing to say about the units, alone
    and with the socket-activation drop-in.
    """

    def setUp(self) -> None:
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            if os.environ.get("CI"):
                self.fail("systemd-analyze is missing: .ci/run installs systemd before the suite")
            raise self.skipTest("systemd-analyze is not installed (apt-get install systemd)")

    def verify(self, *files: str) -> str:
        """
        Copy C{files} from C{contrib/} (with their directories) to a fresh
        directory, with the twistd of the installation path replaced by an
        executable that exists here, and return what C{systemd-analyze
        verify} says about the units among them.
        """
        assert self.analyze is not None
        where = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, where)
        for name in files:
            os.makedirs(os.path.join(where, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(CONTRIB, name)) as f:
                text = f.read()
            if "ExecStart=" in text:
                self.assertIn(INSTALLED_TWISTD, text)
            with open(os.path.join(where, name), "w") as f:
                f.write(text.replace(INSTALLED_TWISTD, sys.executable))
        units = [os.path.join(where, name) for name in files if os.path.dirname(name) == ""]
        result = subprocess.run(
            [self.analyze, "verify", *units], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
        )
        said = (result.stdout + result.stderr).strip()
        self.assertEqual(result.returncode, 0, said)
        return said

    def test_service(self) -> None:
        """
        C{streamd.service} on its own (streamd binds C{--port}) is valid,
        with no warning.
        """
        self.assertEqual(self.verify("streamd.service"), "")

    def test_descriptorsFitMaxClients(self) -> None:
        """
        C{streamd.service}'s C{LimitNOFILE} leaves room for the default
        C{--max-clients} and the daemon's own descriptors.
        """
        with open(os.path.join(CONTRIB, "streamd.service")) as f:
            (limit,) = re.findall(r"^LimitNOFILE=(\d+)$", f.read(), re.M)
        self.assertGreaterEqual(int(limit), ServerConfig.maxClients + RESERVE)

    def test_socketActivation(self) -> None:
        """
        C{streamd.socket} with C{streamd.service} and its drop-in is valid,
        with no warning (an unknown key in the drop-in would be one).
        """
        self.assertEqual(self.verify("streamd.service", "streamd.socket", DROPIN), "")


class SocketActivationTests(TestCase):
    """
    The drop-in's command line, started as systemd starts it, serves the
    stream on the socket it inherits.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_inheritedSocket(self):  # type: ignore[no-untyped-def]
        """
        With a listening socket as file descriptor 3, and C{LISTEN_FDS},
        C{LISTEN_FDNAMES} and C{LISTEN_PID} set as systemd sets them, the
        drop-in's C{twistd ... --listen systemd:domain=INET:index=0} listens
        on that socket, a client receives the clock's ticks there, and SIGTERM
        (C{systemctl stop}) shuts it down in order.
        """
        command = execStart(os.path.join(CONTRIB, DROPIN))
        self.assertEqual(command[0], INSTALLED_TWISTD)
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        # LISTEN_PID is the daemon's own pid: the shell sets it, then becomes twistd.
        argv = ("/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@"', "sh", sys.executable, *twistd(*command[1:]))
        daemon = TwistdProcess()
        transport = reactor.spawnProcess(
            daemon,
            argv[0],
            argv,
            env={**ENV, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "streamd"},
            childFDs={0: "w", 1: "r", 2: "r", 3: listening.fileno()},
        )

        def stop() -> defer.Deferred[tuple[int | None, int | None]]:
            if not daemon.ended.called:
                transport.signalProcess("KILL")
            return daemon.ended

        self.addCleanup(stop)
        self.assertEqual((yield daemon.listening), port)
        heard = Collector(1)
        client = yield connect(reactor, f"tcp:host=127.0.0.1:port={port}", heard)
        (tick,) = yield heard.enough
        self.assertTrue(tick.startswith(b"The time is "), tick)
        client.transport.loseConnection()
        yield client.finished
        transport.signalProcess("TERM")
        # Newer twistd ends with the signal itself once it has shut down.
        self.assertIn((yield daemon.ended), [(0, None), (None, signal.SIGTERM)])
        self.assertIn(b"Main loop terminated", daemon.output)
