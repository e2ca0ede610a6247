"""
Helpers shared by the tests: an in-memory daemon and its clients, and for
tests with real processes: a taken port, waiting for a condition, twistd.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport

from streamd.framing import INT32, Framing
from streamd.hub import FlowControl, Hub
from streamd.server import ServerConfig, StreamServerFactory, StreamServerProtocol
from streamd.service import DaemonConfig, StreamdService
from streamd.stats import Stats


def frames(data: bytes, framing: Framing = INT32) -> list[bytes]:
    """
    The payloads in C{data}, which must hold only whole frames.
    """
    decoder = framing.decoder(framing.maxLength)
    payloads, raw = decoder.feed(data)
    assert raw == data, f"{len(data) - len(raw)} bytes of a partial frame left over"
    return payloads


class InMemoryDaemon:
    """
    A hub and a server factory on a L{Clock}, with clients on
    L{StringTransport}s.
    """

    def __init__(self, config: ServerConfig | None = None, flow: FlowControl | None = None) -> None:
        self.clock = Clock()
        self.stats = Stats()
        self.hub = Hub(self.stats, self.clock, flow or FlowControl())
        self.factory = StreamServerFactory(self.hub, self.clock, config or ServerConfig())
        self._nextPort = 40000

    def connect(self, framing: Framing | None = None) -> tuple[StreamServerProtocol, StringTransport]:
        """
        A new client connection, made as the reactor would make it.
        """
        self._nextPort += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._nextPort)
        if framing is not None:
            self.factory.framing = framing
        protocol = self.factory.buildProtocol(peer)
        assert protocol is not None
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport


def startDaemon(case: Any, config: DaemonConfig) -> tuple[StreamdService, int]:
    """
    Start the whole daemon on the real reactor, to be stopped when C{case}
    ends; return it and the port its first listener got.
    """
    from twisted.internet import reactor

    service = StreamdService(reactor, config)
    service.privilegedStartService()
    service.startService()
    case.addCleanup(lambda: service.running and service.stopService())
    port = service.listeners[0].port
    assert port is not None
    return service, port.getHost().port


ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def twistd(*argv: str) -> tuple[str, ...]:
    """
    The arguments (after the executable, C{sys.executable}) that run twistd
    with C{argv} from this environment.
    """
    from streamd.bench.servers import twistdCommand

    return tuple(twistdCommand(*argv))[1:]


def takenPort(case: Any) -> int:
    """
    A loopback port that something else listens on until C{case} ends.
    """
    holder = socket.socket()
    case.addCleanup(holder.close)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port: int = holder.getsockname()[1]
    return port


@inlineCallbacks
def waitFor(condition: Callable[[], bool], seconds: float = 10.0) -> Any:
    """
    Fire when C{condition()} holds (checked every 50 ms); fail after
    C{seconds}.
    """
    from twisted.internet import reactor

    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        yield deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"still false after {seconds:g} s: {condition}")


def readFile(path: str) -> str:
    """
    The text of C{path}, or C{""} when it does not exist (yet).
    """
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""

