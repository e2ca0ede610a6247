"""
Tests for L{streamd.listen.descriptors}: C{--max-clients} fitted to the
descriptors the daemon may open.
"""

from __future__ import annotations

import resource

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import DaemonConfig, ServerConfig
from streamd.listen import descriptors
from streamd.listen.descriptors import RESERVE, fitClients
from streamd.service import StreamdService


class _Limits:
    """
    A process's descriptor limits, as C{getrlimit} and C{setrlimit} see them.
    """

    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)

    def get(self) -> tuple[int, int]:
        return self.limits

    def set(self, limits: tuple[int, int]) -> None:
        self.limits = limits


class FitTests(SynchronousTestCase):
    """
    The soft limit is raised as far as the hard one allows; what is left
    after the reserve is how many clients may connect.
    """

    def test_raised(self) -> None:
        """
        A soft limit below what --max-clients needs is raised to it.
        """
        limits = _Limits(1024, 65536)
        self.assertEqual(fitClients(10_000, limits.get, limits.set), (10_000, 1024, 10_000 + RESERVE))
        self.assertEqual(limits.limits, (10_000 + RESERVE, 65536))

    def test_hardLimit(self) -> None:
        """
        A hard limit below what --max-clients needs leaves room for fewer
        clients: the reserve stays out of their reach.
        """
        limits = _Limits(1024, 2048)
        self.assertEqual(fitClients(10_000, limits.get, limits.set), (2048 - RESERVE, 1024, 2048))
        self.assertEqual(limits.limits, (2048, 2048))

    def test_enough(self) -> None:
        """
        A limit that is high enough, or unlimited, is left as it is.
        """
        for limits in (_Limits(20_000, 20_000), _Limits(resource.RLIM_INFINITY, resource.RLIM_INFINITY)):
            before = limits.limits
            self.assertEqual(fitClients(100, limits.get, limits.set)[0], 100)
            self.assertEqual(limits.limits, before)


class ServiceTests(SynchronousTestCase):
    """
    The daemon fits its clients to its descriptors when it starts, and says
    so in one line when it cannot serve --max-clients of them.
    """

    def test_warned(self) -> None:
        """
        With too few descriptors the daemon serves as many clients as they
        leave room for, and warns once, naming the limit and the option.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        limits = _Limits(300, 300)
        self.patch(descriptors, "fitClients", lambda maxClients: fitClients(maxClients, limits.get, limits.set))
        service = StreamdService(Clock(), DaemonConfig(listens=(), sources=(), server=ServerConfig(maxClients=1000)))
        service.fitDescriptors()
        self.assertEqual(service.connections.descriptorLimit, 300 - RESERVE)
        self.assertEqual(service.connections.full(1000), None)
        lines = [formatEvent(event) for event in events]
        self.assertIn(
            f"the open-file limit is 300 (ulimit -n, or LimitNOFILE in a systemd unit): --max-clients 1000 needs"
            f" {1000 + RESERVE}; serving at most {300 - RESERVE} clients, and refusing the others",
            lines,
        )
