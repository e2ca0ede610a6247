"""
Tests for the ascii10 framing on the wire: the daemon's connections with the
same checks as int32.  Real clients against real servers are in
L{tests.integration.test_ascii10}.
"""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import ServerConfig
from streamd.framing import ASCII10, INT32, Framing
from streamd.reasons import Reason

from .support import InMemoryDaemon, frames

MESSAGES = [b"", b"a", b"The time is 0.018736", b"\x00\xff" * 300, "caf\u00e9".encode()]


class _ServerFramingMixin:
    """
    What a daemon connection must do in every framing; mixed into one
    TestCase per framing.
    """

    framing: Framing
    other: Framing

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.daemon = InMemoryDaemon(ServerConfig(maxMessageSize=1000))

    def logLines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_byteAtATime(self) -> None:
        """
        Frames a client sends one byte per read reach another client whole
        and in order.
        """
        sender, _ = self.daemon.connect(self.framing)
        _, receiver = self.daemon.connect(self.framing)
        data = self.framing.encodeMany(MESSAGES)
        for i in range(len(data)):
            sender.dataReceived(data[i : i + 1])
        self.assertEqual(frames(receiver.value(), self.framing), MESSAGES)  # type: ignore[attr-defined]

    def test_manyInOneRead(self) -> None:
        """
        Many frames in one read all reach another client, as the same bytes.
        """
        sender, _ = self.daemon.connect(self.framing)
        _, receiver = self.daemon.connect(self.framing)
        data = self.framing.encodeMany(MESSAGES * 50)
        sender.dataReceived(data)
        self.assertEqual(receiver.value(), data)  # type: ignore[attr-defined]

    def test_otherFraming(self) -> None:
        """
        A message reaches a client of the other framing in that framing, and
        back.
        """
        mine, mineTransport = self.daemon.connect(self.framing)
        theirs, theirsTransport = self.daemon.connect(self.other)
        mine.dataReceived(self.framing.encode("h\u00e9llo".encode()))
        theirs.dataReceived(self.other.encode(b"back"))
        self.assertEqual(theirsTransport.value(), self.other.encode("h\u00e9llo".encode()))  # type: ignore[attr-defined]
        self.assertEqual(mineTransport.value(), self.framing.encode(b"back"))  # type: ignore[attr-defined]

    def test_exactlyAtLimit(self) -> None:
        """
        A frame of exactly --max-message-size is relayed.
        """
        sender, senderTransport = self.daemon.connect(self.framing)
        _, receiver = self.daemon.connect(self.framing)
        sender.dataReceived(self.framing.encode(b"x" * 1000))
        self.assertEqual(frames(receiver.value(), self.framing), [b"x" * 1000])  # type: ignore[attr-defined]
        self.assertFalse(senderTransport.disconnecting)  # type: ignore[attr-defined]

    def test_overLimit(self) -> None:
        """
        A header announcing one byte over --max-message-size disconnects that
        client, with a log line; the others keep what it sent before.
        """
        sender, senderTransport = self.daemon.connect(self.framing)
        _, receiver = self.daemon.connect(self.framing)
        sender.dataReceived(self.framing.encode(b"fine") + self.framing.header(1001) + b"x" * 10)
        self.assertTrue(senderTransport.disconnecting)  # type: ignore[attr-defined]
        self.assertFalse(receiver.disconnecting)  # type: ignore[attr-defined]
        self.assertEqual(frames(receiver.value(), self.framing), [b"fine"])  # type: ignore[attr-defined]
        self.assertIn(  # type: ignore[attr-defined]
            "127.0.0.1:40001 announced a 1001-byte frame, over the 1000-byte limit; disconnecting",
            self.logLines(),
        )


class Int32ServerTests(_ServerFramingMixin, SynchronousTestCase):
    framing = INT32
    other = ASCII10


class ASCII10ServerTests(_ServerFramingMixin, SynchronousTestCase):
    framing = ASCII10
    other = INT32

    def test_badHeader(self) -> None:
        """
        A header that is not a left-aligned decimal number (here, an HTTP
        request) disconnects that client with a log line saying what it sent.
        """
        sender, senderTransport = self.daemon.connect(ASCII10)
        _, receiver = self.daemon.connect(ASCII10)
        sender.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(senderTransport.disconnecting)
        self.assertEqual(receiver.value(), b"")
        self.assertIn(
            "127.0.0.1:40001 sent b'GET / HTTP', which is not a 10-character decimal length header; disconnecting",
            self.logLines(),
        )
        self.assertEqual(self.daemon.stats.disconnects[Reason.BAD_FRAME], 1)

    def test_lengthCountsBytes(self) -> None:
        """
        The header counts bytes: C{caf\\u00e9} is 5 bytes, where the exercise's
        C{len(msg)} on text would say 4 characters.
        """
        _, receiver = self.daemon.connect(ASCII10)
        self.daemon.hub.publish(["caf\u00e9".encode()])
        self.assertEqual(receiver.value(), b"5         caf\xc3\xa9")


# The sockets exercise's client algorithm, stdlib only: recv(16) at a time,
# a 10-character header read with int(), then the body; bytes beyond one
# message are kept for the next.  Prints each message's repr.
