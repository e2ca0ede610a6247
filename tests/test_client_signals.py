"""
How C{python -m streamd.client} ends when a signal stops it: real processes
against a daemon on loopback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from streamd.service import DaemonConfig, Listen

from .support import startDaemon
from .test_integration import TICK

LOOPBACK = "tcp:0:interface=127.0.0.1"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class Spawned(ProcessProtocol):
    """
    A process whose output is kept: L{receiving} fires at its first output,
    L{ended} with how it ended (C{exitCode}, C{signal}).
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.receiving: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[Any] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if not self.receiving.called:
            self.receiving.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)


class _SpawnMixin:
    """
    A ticking daemon in this process, and Python processes that are killed
    if a test leaves them running.
    """

    timeout = 30
    addCleanup: Any

    def setUp(self) -> None:
        config = DaemonConfig(listens=(Listen(LOOPBACK),), interval=0.05, statsInterval=0)
        self.service, self.port = startDaemon(self, config)

    def spawn(self, *argv: str) -> Spawned:
        """
        Run C{python ARGV}.
        """
        process = Spawned()
        transport = reactor.spawnProcess(process, sys.executable, (sys.executable, *argv), env=ENV)

        def kill() -> defer.Deferred[Any]:
            if not process.ended.called:
                transport.signalProcess("KILL")
            return process.ended

        self.addCleanup(kill)
        return process


class ClientSignalTests(_SpawnMixin, TestCase):
    """
    SIGTERM ends the command-line client as quietly as Ctrl-C does.
    """

    def client(self) -> Spawned:
        return self.spawn("-m", "streamd.client", "--port", str(self.port))

    @defer.inlineCallbacks
    def test_terminated(self):  # type: ignore[no-untyped-def]
        """
        SIGTERM ends a printing client with status 143 (128 + 15, as a shell
        reports it) and nothing on stderr: not the connection it closed, not
        a traceback.
        """
        client = self.client()
        yield client.receiving
        client.transport.signalProcess("TERM")
        status = yield client.ended
        self.assertEqual((status.exitCode, client.err), (143, b""))
        self.assertTrue(TICK.match(client.out.splitlines()[0]), client.out)

    @defer.inlineCallbacks
    def test_interruptedThenTerminated(self):  # type: ignore[no-untyped-def]
        """
        SIGTERM while Ctrl-C is already stopping the client (as a supervisor
        that sends both does) changes nothing: the first signal's status, and
        no C{ReactorNotRunning} traceback.
        """
        client = self.client()
        yield client.receiving
        client.transport.signalProcess("INT")
        client.transport.signalProcess("TERM")
        status = yield client.ended
        self.assertEqual((status.exitCode, client.err), (130, b""))
