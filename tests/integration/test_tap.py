"""
Listeners made from C{twistd streamd} options, on real sockets.
"""

from __future__ import annotations

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from streamd.listen.listener import ListenerService


class EveryInterfaceTests(TestCase):
    """
    Listeners on real sockets say when they are open to every interface.
    """

    def test_everyInterfaceWarned(self) -> None:
        """
        A listener open to every interface (0.0.0.0 or ::) is named in a
        warning, with the way to keep it local; one on 127.0.0.1 is not.
        """
        from twisted.internet import reactor

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for description in ("tcp:0", "tcp6:0:interface=\\:\\:", "tcp:0:interface=127.0.0.1"):
            listener = ListenerService(description, serverFromString(reactor, description), Factory())
            listener.startService()
            self.addCleanup(listener.stopService)
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 2, warnings)
        self.assertRegex(warnings[0], r"^0\.0\.0\.0:\d+ is open to every interface: anyone who can reach")
        self.assertTrue(warnings[0].endswith("(give interface=127.0.0.1 in tcp:0 to keep it local)"), warnings)
        self.assertRegex(warnings[1], r"^\[::\]:\d+ is open to every interface")
