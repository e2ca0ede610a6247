"""
Helpers shared by the tests: an in-memory daemon and its clients, a
protocol on a L{StringTransport} (L{onStringTransport}), numbered messages
published at a steady pace (L{Ticker}), and for tests with real processes
and sockets, one each of: a port that is taken (L{takenPort}), waiting for
a condition (L{waitFor}), a C{twistd streamd} process (L{spawnTwistd}).
"""

from __future__ import annotations

import inspect
import os
import re
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import BaseProtocol, ProcessProtocol
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import directlyProvides

from streamd.config import DaemonConfig, FlowControl, ServerConfig
from streamd.fanout.hub import Hub
from streamd.framing import INT32, Framing
from streamd.server import StreamServerFactory, StreamServerProtocol
from streamd.service import StreamdService
from streamd.stats import Stats


def frames(data: bytes, framing: Framing = INT32) -> list[bytes]:
    """
    The payloads in C{data}, which must hold only whole frames.
    """
    decoder = framing.decoder(framing.maxLength)
    payloads, raw = decoder.feed(data)
    assert raw == data, f"{len(data) - len(raw)} bytes of a partial frame left over"
    return [bytes(payload) for payload in payloads]


_P = TypeVar("_P", bound=BaseProtocol)
_Ending = TypeVar("_Ending", bound=ProcessProtocol)


def onStringTransport(protocol: _P, tls: bool = False) -> tuple[_P, StringTransport]:
    """
    C{protocol} connected to a new L{StringTransport} (that says it is a
    TLS one, with C{tls}).
    """
    transport = StringTransport()
    if tls:
        directlyProvides(transport, ISSLTransport)
    protocol.makeConnection(transport)
    return protocol, transport


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


class Ticker:
    """
    Publishes C{PREFIX-0}, C{PREFIX-1}, ... into a hub, one every
    C{interval} seconds from now, until stopped or the test ends.

    @ivar published: how many so far.
    """

    def __init__(self, case: Any, hub: Hub, interval: float = 0.005, prefix: bytes = b"0") -> None:
        self.published = 0
        self._hub = hub
        self._prefix = prefix
        self._call = LoopingCall(self._tick)
        self._call.start(interval)
        case.addCleanup(lambda: self._call.running and self._call.stop())

    def _tick(self) -> None:
        self._hub.publish([b"%s-%d" % (self._prefix, self.published)])
        self.published += 1

    def stop(self) -> None:
        """
        Publish no more.
        """
        self._call.stop()


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
    return ("-c", "from twisted.scripts.twistd import run; run()", *argv)


def printed(pattern: str, text: str) -> float:
    """
    The number (thousands separators allowed) that C{pattern}'s one group
    finds in a program's output C{text}.
    """
    found = re.search(pattern, text)
    if found is None:
        raise AssertionError(f"no {pattern!r} in {text!r}")
    return float(found.group(1).replace(",", ""))


@inlineCallbacks
def daemonRunning(log: Callable[[], str], token: str = "") -> Any:
    """
    Fire once the daemon whose log C{log()} returns runs its reactor: a
    client (sending C{token}, if any) got a message from the port it says
    it listens on.  Before that, a signal would end twistd with its default
    action, before Twisted's handlers (or streamd's SIGHUP one) are in place.
    """
    from twisted.internet.utils import getProcessOutputAndValue

    yield waitFor(lambda: "streamd listening on" in log())
    port = re.search(r"streamd listening on 127\.0\.0\.1:(\d+)", log())
    assert port is not None, log()
    client = ("-m", "streamd.client", "--port", port.group(1), "--count", "1")
    out, err, code = yield getProcessOutputAndValue(sys.executable, client, env={**ENV, "STREAMD_TOKEN": token})
    assert code == 0, err


def takenPort(case: Any, listen: bool = True) -> int:
    """
    A loopback port held until C{case} ends, so that nothing else gets it
    meanwhile: listened on (taken: listening there fails), or with
    C{listen=False} only bound (closed: connecting there is refused).
    """
    holder = socket.socket()
    case.addCleanup(holder.close)
    holder.bind(("127.0.0.1", 0))
    if listen:
        holder.listen()
    port: int = holder.getsockname()[1]
    return port


@inlineCallbacks
def waitFor(
    condition: Callable[[], object], seconds: float = 10.0, details: Callable[[], object] | None = None
) -> Any:
    """
    Fire once C{condition()} is true, checking it every 10 ms; fail after
    C{seconds}, with C{details()} (a log, an output) in the message.

    For what a test cannot be told of otherwise: a count in the daemon, a
    line in a file, a process gone.  Where a Deferred or a log observer can
    say it, wait on that instead.
    """
    from twisted.internet import reactor

    deadline = reactor.seconds() + seconds
    while not condition():
        if reactor.seconds() > deadline:
            more = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"still false after {seconds:g} s: {_source(condition)}{more}")
        yield deferLater(reactor, 0.01, lambda: None)


def _source(function: Callable[..., object]) -> str:
    """
    The line of source that defines C{function} (a lambda, usually), to say
    what a test waited for.
    """
    try:
        return inspect.getsource(function).strip()
    except (OSError, TypeError):
        return repr(function)


_LISTENING = re.compile(rb"streamd listening on (?:unix:\S+|\S+:(\d+))")


class TwistdProcess(ProcessProtocol):
    """
    A C{twistd -n streamd} process started by L{spawnTwistd}: its output so
    far, and Deferreds for what it logs and for its end.

    @ivar output: what it wrote on stdout and stderr (twistd -n logs there).
    @ivar listening: fires once it logs that its first listener listens:
        with the port of a TCP listener, C{None} for a UNIX socket; fails if
        it ends first.
    @ivar ended: fires with C{(exitCode, signal)} once it has ended.
    """

    def __init__(self) -> None:
        self.output = b""
        self.listening: Deferred[int | None] = Deferred()
        self.ended: Deferred[tuple[int | None, int | None]] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.listening.called:
            # Whole lines only, so that a port cut by a read is not taken.
            found = _LISTENING.search(self.output, 0, self.output.rfind(b"\n") + 1)
            if found:
                self.listening.callback(int(found.group(1)) if found.group(1) else None)
        for entry in list(self._waiting):
            if entry[0] in self.output:
                self._waiting.remove(entry)
                entry[1].callback(None)

    errReceived = outReceived

    def logged(self, text: bytes) -> Deferred[None]:
        """
        Fires once C{text} is in the output (at once if it is already);
        fails if the process ends without writing it.
        """
        d: Deferred[None] = Deferred()
        self._waiting.append((text, d))
        self.outReceived(b"")
        return d

    def processEnded(self, reason: Failure) -> None:
        why = f"twistd ended (%s) before logging %r:\n{self.output.decode(errors='replace')}"
        if not self.listening.called:
            self.listening.errback(Exception(why % (reason.getErrorMessage(), "streamd listening on")))
        waiting, self._waiting = self._waiting, []
        for text, d in waiting:
            d.errback(Exception(why % (reason.getErrorMessage(), text)))
        status = reason.value
        self.ended.callback((getattr(status, "exitCode", None), getattr(status, "signal", None)))


def spawnTwistd(
    case: Any, *argv: str, env: dict[str, str] | None = None, twistdOptions: tuple[str, ...] = ()
) -> TwistdProcess:
    """
    Start C{twistd -n --pidfile= TWISTDOPTIONS streamd ARGV} in this Python;
    when C{case} ends, kill it if it still runs and wait until it has ended.
    """
    from twisted.internet import reactor

    process = TwistdProcess()
    command = twistd("-n", "--pidfile=", *twistdOptions, "streamd", *argv)
    reactor.spawnProcess(process, sys.executable, (sys.executable, *command), env=ENV if env is None else env)

    def kill() -> Deferred[tuple[int | None, int | None]]:
        if not process.ended.called:
            try:
                process.transport.signalProcess("KILL")  # type: ignore[union-attr]
            except ProcessExitedAlready:
                pass
        return process.ended

    case.addCleanup(kill)
    return process


def spawnPython(case: Any, argv: tuple[str, ...], process: _Ending) -> _Ending:
    """
    Run C{python ARGV} (this Python, this environment) as C{process};
    when C{case} ends, kill it if it still runs and wait until it has ended.
    """
    from twisted.internet import reactor

    transport = reactor.spawnProcess(process, sys.executable, (sys.executable, *argv), env=ENV)
    ended: Deferred[Any] = process.ended  # type: ignore[attr-defined]

    def kill() -> Deferred[Any]:
        if not ended.called:
            transport.signalProcess("KILL")
        return ended

    case.addCleanup(kill)
    return process


def readFile(path: str) -> str:
    """
    The text of C{path}, or C{""} when it does not exist (yet).
    """
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""

