"""
Tests for L{streamd.protocol}: the framed protocol both ends share.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.test.test_basic import IntNTestCaseMixin, RecvdAttributeMixin, TestMixin
from twisted.trial.unittest import SynchronousTestCase

from streamd.framing import ASCII10, INT32
from streamd.protocol import FramedProtocol, addressName


class Recorder(FramedProtocol):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.received: list[bytes] = []

    def stringReceived(self, string: bytes) -> None:
        self.received.append(string)


class FramedProtocolTests(SynchronousTestCase):
    """
    L{FramedProtocol} keeps L{Int32StringReceiver}'s contract.
    """

    def connect(self, framing=INT32) -> tuple[Recorder, StringTransport]:  # type: ignore[no-untyped-def]
        protocol = Recorder()
        protocol.framing = framing
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4000))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_isInt32StringReceiver(self) -> None:
        """
        Code written for L{Int32StringReceiver} works with it: C{stringReceived}
        gets each message, C{sendString} frames one.
        """
        protocol, transport = self.connect()
        self.assertIsInstance(protocol, Int32StringReceiver)
        protocol.dataReceived(INT32.encodeMany([b"a", b"bc"]))
        protocol.sendString(b"out")
        self.assertEqual(protocol.received, [b"a", b"bc"])
        self.assertEqual(transport.value(), b"\x00\x00\x00\x03out")

    def test_splitFrameGivesBytes(self) -> None:
        """
        C{stringReceived} gets C{bytes} for a message that arrived over
        several reads too, though the decoder hands over a view of it.
        """
        protocol, transport = self.connect()
        data = INT32.encode(b"x" * 1000)
        protocol.dataReceived(data[:10])
        protocol.dataReceived(data[10:])
        self.assertEqual(protocol.received, [b"x" * 1000])
        self.assertIs(type(protocol.received[0]), bytes)

    def test_framingPerConnection(self) -> None:
        """
        A connection given the ascii10 framing reads and writes ascii10.
        """
        protocol, transport = self.connect(ASCII10)
        protocol.dataReceived(b"2         hi")
        protocol.sendString(b"yo")
        self.assertEqual((protocol.received, transport.value()), ([b"hi"], b"2         yo"))

    def test_stopsAfterBadFrame(self) -> None:
        """
        After an oversized frame the connection is aborted and nothing more
        is delivered, even if more bytes arrive.
        """
        protocol, transport = self.connect()
        protocol.MAX_LENGTH = 5
        protocol.connectionMade()
        protocol.dataReceived(INT32.encode(b"ok") + INT32.header(6) + b"123456")
        protocol.dataReceived(INT32.encode(b"late"))
        self.assertEqual(protocol.received, [b"ok"])
        self.assertTrue(transport.disconnecting)


class AddressNameTests(SynchronousTestCase):
    """
    Peers are named briefly in the log.
    """

    def test_names(self) -> None:
        """
        IPv4 as host:port, IPv6 in brackets, UNIX sockets by path or as an
        unnamed client.
        """
        self.assertEqual(addressName(IPv4Address("TCP", "127.0.0.1", 7000)), "127.0.0.1:7000")
        self.assertEqual(addressName(IPv6Address("TCP", "::1", 7000)), "[::1]:7000")
        self.assertEqual(addressName(UNIXAddress(b"/run/streamd.sock")), "unix:/run/streamd.sock")
        self.assertEqual(addressName(UNIXAddress(None)), "unix:(client)")


class _Int32Receiver(TestMixin, FramedProtocol):
    """
    L{FramedProtocol} as a user would subclass L{Int32StringReceiver}: the
    mixin Twisted's own tests give their C{Int32StringReceiver}.
    """


class Int32StringReceiverContractTests(SynchronousTestCase, IntNTestCaseMixin, RecvdAttributeMixin):
    """
    Twisted's own tests of L{Int32StringReceiver}, run against
    L{FramedProtocol}: the base class is real, not nominal.
    """

    protocol = _Int32Receiver
    strings = [b"a", b"b" * 16]
    illegalStrings = [b"\x10\x00\x00\x00aaaaaa"]
    partialStrings = [b"\x00\x00\x00", b"hello there", b""]
