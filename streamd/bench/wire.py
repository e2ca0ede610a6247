"""
The client side of each server under test: how to publish a message, how to
subscribe, and what a subscriber receives.
"""

from __future__ import annotations

import socket
from struct import Struct

from streamd.bench.records import Int32Records, RecordFormat, RespMessages

CHANNEL = b"bench"

_INT32 = Struct(">I")


class Wire:
    """
    One server's protocol, as a plain-socket client speaks it.

    @ivar name: the server's name in reports.
    """

    name: str

    def records(self, maxLength: int) -> RecordFormat:
        """
        The layout of what a subscriber receives.
        """
        raise NotImplementedError

    trailer = b""

    def header(self, size: int) -> bytes:
        """
        What precedes a C{size}-byte payload in the bytes that publish it.
        """
        raise NotImplementedError

    def message(self, payload: bytes) -> bytes:
        """
        The bytes that publish C{payload}.
        """
        return self.header(len(payload)) + payload + self.trailer

    def subscribe(self, sock: socket.socket) -> None:
        """
        Make the connected blocking C{sock} a subscriber.
        """


class StreamdWire(Wire):
    """
    streamd: every connection receives what any other one sends.
    """

    name = "streamd"

    def records(self, maxLength: int) -> RecordFormat:
        return Int32Records(maxLength)

    def header(self, size: int) -> bytes:
        return _INT32.pack(size)


class RedisWire(Wire):
    """
    Redis pub/sub on one channel, in RESP2.
    """

    name = "redis"
    trailer = b"\r\n"
    _confirmation = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(CHANNEL), CHANNEL)

    def records(self, maxLength: int) -> RecordFormat:
        return RespMessages(CHANNEL)

    def header(self, size: int) -> bytes:
        return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(CHANNEL), CHANNEL, size)

    def subscribe(self, sock: socket.socket) -> None:
        sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL))
        expected = self._confirmation
        received = b""
        while len(received) < len(expected):
            chunk = sock.recv(len(expected) - len(received))
            if not chunk:
                raise ConnectionError("redis closed a connection while subscribing")
            received += chunk
        if received != expected:
            raise ConnectionError(f"redis answered SUBSCRIBE with {received!r}")


WIRES: dict[str, Wire] = {w.name: w for w in (StreamdWire(), RedisWire())}
