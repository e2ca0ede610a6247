"""
Integration tests of slow and churning clients against a real daemon
process on loopback.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from streamd.config import DaemonConfig, Listen
from streamd.service import StreamdService

from ..support import waitFor


class ChurnTests(TestCase):
    """
    Clients that connect and disconnect over and over leave nothing behind.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_churn(self):  # type: ignore[no-untyped-def]
        """
        After 2,000 connect/disconnect cycles, some sending a partial frame
        first, the daemon's connection count and this process's open file
        descriptors are back at their baseline (taken after 10 warm-up cycles).
        """
        service = StreamdService(
            reactor, DaemonConfig(listens=(Listen("tcp:0:interface=127.0.0.1"),), sources=(), statsInterval=0)
        )
        service.privilegedStartService()
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        port = service.listeners[0].port
        assert port is not None
        address = ("127.0.0.1", port.getHost().port)
        yield self.churn(service, address, 10)
        baseline = len(os.listdir("/proc/self/fd"))
        yield self.churn(service, address, 2000)
        self.assertEqual(service.stats.connectionsTotal, 2010)
        self.assertEqual(len(service.connections), 0)
        self.assertEqual(service.hub.subscribers, ())
        self.assertEqual(len(os.listdir("/proc/self/fd")), baseline)
        yield service.stopService()

    @defer.inlineCallbacks
    def churn(self, service: StreamdService, address: tuple[str, int], cycles: int):  # type: ignore[no-untyped-def]
        """
        Connect and disconnect C{cycles} times, letting the daemon run in
        between, then wait (bounded) until it has seen every connection close.
        """
        expected = service.stats.connectionsTotal + cycles
        for cycle in range(cycles):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(address)
            if cycle % 3 == 0:
                yield deferLater(reactor, 0, lambda: None)
                try:
                    sock.send(b"\x00\x00\x01\x00partial")
                except OSError:
                    pass
            sock.close()
            if cycle % 50 == 0:
                yield deferLater(reactor, 0, lambda: None)
        yield waitFor(lambda: service.stats.connectionsTotal == expected and len(service.connections) == 0, 5)
