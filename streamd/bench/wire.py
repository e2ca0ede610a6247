"""
The client side of each server under test: how to open a connection, how to
publish a message, how to subscribe, and what a subscriber receives.
"""

from __future__ import annotations

import socket
from struct import Struct

from streamd.bench.records import Chunk, Int32Records, NatsMessages, RecordFormat, RespMessages

CHANNEL = b"bench"
"""
The Redis channel and the NATS subject of every run.
"""
NATS_SID = b"1"

_INT32 = Struct(">I")


class Wire:
    """
    One server's protocol, as a plain-socket client speaks it.

    A client opens its connection by sending L{request} and waiting until
    L{answered} says the server has answered it: subscribers ask to
    subscribe, publishers whatever the server wants before a publish.

    @ivar name: the server's name in reports.
    """

    name: str

    def records(self, maxLength: int) -> RecordFormat:
        """
        The layout of what a subscriber receives.
        """
        raise NotImplementedError

    trailer = b""
    pong = b""
    """
    A subscriber's answer to each control record it receives.
    """

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

    def request(self, subscriber: bool) -> bytes:
        """
        What a new connection sends first: as a subscriber, or as a
        publisher.
        """
        return b""

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        """
        How many bytes at the start of C{received} answer L{request}, or
        C{None} while the answer is incomplete.

        @raise ConnectionError: if the server refused or said something else.
        """
        return 0

    def replies(self, sock: socket.socket, received: Chunk) -> None:
        """
        Deal with what the server sent a publisher after the opening
        (C{received}, one read): answer what must be answered, raise
        C{ConnectionError} for an error; drop the rest.
        """

    def open(self, sock: socket.socket, subscriber: bool) -> None:
        """
        Open the connected blocking C{sock} as a subscriber or a publisher:
        send L{request}, and return once the server has answered it.
        """
        request = self.request(subscriber)
        if request:
            sock.sendall(request)
        received = b""
        while (used := self.answered(received, subscriber)) is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{self.name} closed a connection while it opened: {received!r}")
            received += chunk
        if used != len(received):
            raise ConnectionError(f"{self.name} sent more than an answer: {received[used:]!r}")

    def subscribe(self, sock: socket.socket) -> None:
        """
        Make the connected blocking C{sock} a subscriber.
        """
        self.open(sock, subscriber=True)


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

    def request(self, subscriber: bool) -> bytes:
        if not subscriber:
            return b""
        return b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL)

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        if not subscriber:
            return 0
        expected = self._confirmation
        if not expected.startswith(bytes(received[: len(expected)])):
            raise ConnectionError(f"redis answered SUBSCRIBE with {bytes(received)!r}")
        return len(expected) if len(received) >= len(expected) else None


class NatsWire(Wire):
    """
    Core NATS on one subject, in its text protocol.

    The server greets every connection with C{INFO}; a client sends
    C{CONNECT} (without C{+OK} acknowledgements), a subscriber C{SUB}, and
    both a C{PING}: its C{PONG} says the server has taken all of it, the
    subscription included.  Publishers and subscribers answer the server's
    C{PING}s.
    """

    name = "nats"
    trailer = b"\r\n"
    pong = b"PONG\r\n"
    _connect = b'CONNECT {"verbose":false,"pedantic":false}\r\n'

    def records(self, maxLength: int) -> RecordFormat:
        return NatsMessages(CHANNEL, NATS_SID)

    def header(self, size: int) -> bytes:
        return b"PUB %s %d\r\n" % (CHANNEL, size)

    def request(self, subscriber: bool) -> bytes:
        sub = b"SUB %s %s\r\n" % (CHANNEL, NATS_SID) if subscriber else b""
        return self._connect + sub + b"PING\r\n"

    def answered(self, received: Chunk, subscriber: bool) -> int | None:
        data = bytes(received)
        if len(data) >= 5 and not data.startswith(b"INFO "):
            raise ConnectionError(f"nats did not start with INFO: {data[:80]!r}")
        info = data.find(b"\r\n")
        if info < 0:
            return None
        rest = data[info + 2 :]
        if rest.startswith(b"-ERR"):
            raise ConnectionError(f"nats refused the connection: {rest.strip()!r}")
        if not b"PONG\r\n".startswith(rest[:6]):
            raise ConnectionError(f"nats answered with {rest[:80]!r} instead of PONG")
        return info + 2 + 6 if len(rest) >= 6 else None

    def replies(self, sock: socket.socket, received: Chunk) -> None:
        data = bytes(received)
        error = data.find(b"-ERR")
        if error >= 0:
            raise ConnectionError(f"nats: {data[error:].splitlines()[0].decode('ascii', 'replace')}")
        for _ in range(data.count(b"PING\r\n")):
            sock.sendall(b"PONG\r\n")


WIRES: dict[str, Wire] = {w.name: w for w in (StreamdWire(), RedisWire(), NatsWire())}
