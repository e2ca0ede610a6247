"""
Tests that hostile or broken clients cost only their own connection.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import ServerConfig
from streamd.framing import INT32

from .support import InMemoryDaemon, frames


class HostileInputTests(SynchronousTestCase):
    """
    Whatever bytes a client sends, the daemon relays its valid frames or
    drops it cleanly, and never raises.
    """

    @settings(deadline=None, max_examples=3 * settings().max_examples)
    @given(st.lists(st.binary(max_size=200), max_size=10))
    def test_anyBytes(self, reads: list[bytes]) -> None:
        """
        Any sequence of reads either yields messages, relayed to the other
        client, or a clean disconnect; no exception escapes, and the other
        client's stream holds only whole frames.
        """
        daemon = InMemoryDaemon(ServerConfig(maxMessageSize=100))
        hostile, hostileTransport = daemon.connect()
        _, healthyTransport = daemon.connect()
        for data in reads:
            hostile.dataReceived(data)
        relayed = frames(healthyTransport.value())
        decoder = INT32.decoder(100)
        expected, _ = decoder.feed(b"".join(reads))
        self.assertEqual(relayed, expected)
        self.assertEqual(hostileTransport.disconnecting, decoder.error is not None)
        hostile.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(daemon.stats.connections, 1)

    def test_frameCutOffByDisconnect(self) -> None:
        """
        A client that vanishes in the middle of a frame publishes nothing of
        it, and the daemon forgets it.
        """
        daemon = InMemoryDaemon()
        hostile, _ = daemon.connect()
        _, healthyTransport = daemon.connect()
        hostile.dataReceived(INT32.encode(b"whole") + INT32.header(1000) + b"partial")
        hostile.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(frames(healthyTransport.value()), [b"whole"])
        self.assertEqual(len(daemon.factory.connections), 1)
        self.assertEqual(len(daemon.hub.subscribers), 1)

    def test_connectAndVanish(self) -> None:
        """
        Many clients that connect and vanish at once leave no connection and
        no subscriber behind, and no timer but the two that sum up, within a
        second, the connection lines not logged one by one.
        """
        daemon = InMemoryDaemon(ServerConfig(idleTimeout=60))
        for _ in range(1000):
            client, _ = daemon.connect()
            client.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(len(daemon.factory.connections), 0)
        self.assertEqual(daemon.hub.subscribers, ())
        self.assertEqual(len(daemon.clock.getDelayedCalls()), 2)
        daemon.clock.advance(1)
        self.assertEqual(daemon.clock.getDelayedCalls(), [])
        self.assertEqual((daemon.stats.connections, daemon.stats.connectionsTotal), (0, 1000))
