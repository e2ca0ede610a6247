"""
The daemon's life as twistd runs it, in process: SIGHUP, token files, the
orderly shutdown.  The real twistd process is in
L{tests.integration.test_daemon}.
"""

from __future__ import annotations

import gc
import os
import signal
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import DaemonConfig, Listen, ServerConfig
from streamd.service import StreamdService, freezeStartup


def _service(access: AccessPolicy | None = None) -> StreamdService:
    server = ServerConfig(access=access) if access is not None else ServerConfig()
    return StreamdService(Clock(), DaemonConfig(listens=(), sources=(), server=server))


def _tokenFile(directory: str, name: str, token: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(token)
    return path


class HangupTests(SynchronousTestCase):
    """
    SIGHUP and token files, in process.
    """

    def test_hangupHandledWithoutTokens(self) -> None:
        """
        A daemon without token files still handles SIGHUP (whose default
        action ends the process) and logs that there is nothing to reload;
        stopping restores the previous handler.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        before = signal.getsignal(signal.SIGHUP)
        service = _service()
        service.startService()
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        self.assertEqual(signal.getsignal(signal.SIGHUP), service._hangup)
        service.reloadTokens()
        self.assertIn("SIGHUP: no token files to reload", [formatEvent(e) for e in events])
        service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

    def test_unreadableTokenFileWarned(self) -> None:
        """
        At start, a token file that the daemon's user cannot read (so SIGHUP
        could not reload it) is named in a warning; a readable one is not.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        directory = tempfile.mkdtemp()
        readable = _tokenFile(directory, "read.token", b"reader")
        gone = _tokenFile(directory, "publish.token", b"publisher")
        access = AccessPolicy(auth=TokenFile(readable), publish=TokenFile(gone))
        os.remove(gone)
        service = _service(access)
        service.startService()
        service.stopService()
        warnings = [formatEvent(e) for e in events if "is not readable by" in formatEvent(e)]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(f"token file {gone} is not readable by uid {os.geteuid()}", warnings[0])


class ShutdownTests(SynchronousTestCase):
    """
    The orderly shutdown, on a L{Clock}.
    """

    def test_finalStatsAfterConnectionsClosed(self) -> None:
        """
        The counters logged at shutdown come after the last client's
        disconnection and count it (C{connections=0}), not before it.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        service = StreamdService(clock, DaemonConfig(listens=(Listen("tcp:0:interface=127.0.0.1"),), sources=()))
        protocol = service.listeners[0].factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        stopped = service.stopService()
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(0)
        self.successResultOf(stopped)
        lines = [formatEvent(e) for e in events]
        stats = [i for i, line in enumerate(lines) if line.startswith("stats: ")]
        disconnected = [i for i, line in enumerate(lines) if "disconnected" in line]
        self.assertEqual(len(stats), 1, lines)
        self.assertIn("stats: connections=0 connectionsTotal=1", lines[stats[0]])
        self.assertGreater(stats[0], disconnected[0])


class FreezeStartupTests(SynchronousTestCase):
    """
    What starting built is left out of full collections.
    """

    def test_frozen(self) -> None:
        """
        L{freezeStartup} moves every object the collector tracks to its
        permanent generation.
        """
        self.addCleanup(gc.unfreeze)
        built = [[] for _ in range(10)]
        freezeStartup()
        self.assertGreaterEqual(gc.get_freeze_count(), len(built))
