"""
Several daemons joined through a real nats-server (core mode): every
message published on any node reaches every client of every node once, in
each publisher's order, and a node cut off from NATS goes on serving its
own clients.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from streamd.client import StreamClientProtocol, connect
from streamd.cluster.link import PENDING_BYTES
from streamd.config import ClusterConfig, DaemonConfig, Listen, ServerConfig
from streamd.service import StreamdService

from ..natsupport import startNats, startNatsCluster
from ..support import Ticker, spawnTwistd, startDaemon, waitFor

LOOPBACK = "tcp:0:interface=127.0.0.1"


def freePort() -> int:
    """
    A loopback port nothing listens on (now).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def tally(messages: list[bytes], publishers: int, perPublisher: int) -> dict[str, int]:
    """
    Count what one subscriber got of messages C{b"P-N"} (publisher P,
    number N from 0): how many, how many more than once, how many out of
    their publisher's order, and how many of the C{publishers * perPublisher}
    sent are missing.
    """
    seen: set[bytes] = set()
    last = [-1] * publishers
    duplicates = outOfOrder = 0
    for message in messages:
        if message in seen:
            duplicates += 1
            continue
        seen.add(message)
        publisher, number = map(int, message.split(b"-"))
        if number <= last[publisher]:
            outOfOrder += 1
        last[publisher] = max(last[publisher], number)
    return {
        "received": len(messages),
        "duplicates": duplicates,
        "outOfOrder": outOfOrder,
        "missing": publishers * perPublisher - len(seen),
    }


class _ClusterMixin:
    """
    Nodes on the real reactor, joined through a nats-server of the test.
    """

    addCleanup: Callable[..., None]
    assertEqual: Callable[..., None]

    def startNode(self, *servers: int, **settings: Any) -> tuple[StreamdService, int]:
        """
        A daemon on a free loopback port (or C{listens}) joined to the NATS
        servers on C{servers}.
        """
        cluster = ClusterConfig(
            tuple(f"nats://127.0.0.1:{port}" for port in servers),
            reconnectWait=0.1,
            **settings.pop("cluster", {}),
        )
        listens = settings.pop("listens", (Listen(LOOPBACK),))
        config = DaemonConfig(listens=listens, sources=(), statsInterval=0, cluster=cluster, **settings)
        return startDaemon(self, config)

    @defer.inlineCallbacks
    def client(self, port: int, received: list[bytes] | None = None) -> Any:
        """
        A client of the node on C{port} that keeps what it receives in
        C{received}; closed when the test ends.
        """
        sink = received.append if received is not None else (lambda message: None)
        protocol: StreamClientProtocol = yield connect(reactor, f"tcp:host=127.0.0.1:port={port}", sink)

        def close() -> Any:
            protocol.transport.loseConnection()
            return protocol.finished

        self.addCleanup(close)
        return protocol

    @defer.inlineCallbacks
    def inboxes(self, *nodes: tuple[StreamdService, int]) -> Any:
        """
        A client on each of C{nodes} (a service and its port); fires with
        the list each keeps what it receives in, once each node counts its
        client.
        """
        received: list[list[bytes]] = [[] for _ in nodes]
        for (_, port), inbox in zip(nodes, received, strict=True):
            yield self.client(port, inbox)
        yield waitFor(lambda: all(len(service.hub.subscribers) == 1 for service, _ in nodes))
        return received

    @defer.inlineCallbacks
    def publishEverywhere(
        self, nodes: list[tuple[StreamdService, int]], perPublisher: int, seconds: float
    ) -> Any:
        """
        With a publisher and two subscribers on each of C{nodes}, each
        publisher sends C{perPublisher} messages, then one more to end:
        check that every subscriber gets every message exactly once, each
        publisher's in order, whether it was published on its own node or
        another (the bulk within C{seconds}); fire with how many messages
        were published in all, the ends too.
        """
        count = len(nodes)
        inboxes: list[list[bytes]] = []
        for _, port in nodes:
            for _ in range(2):
                inboxes.append([])
                yield self.client(port, inboxes[-1])
        publishers = []
        for _, port in nodes:
            publishers.append((yield self.client(port)))
        yield waitFor(lambda: all(len(service.hub.subscribers) == 3 for service, _ in nodes))
        for number in range(perPublisher):
            for p, publisher in enumerate(publishers):
                publisher.sendString(b"%d-%d" % (p, number))
        everything = count * perPublisher
        # Each publisher's order means its last message comes after all the
        # others: once every inbox holds everything, extra copies would show.
        yield waitFor(lambda: all(len(set(inbox)) == everything for inbox in inboxes), seconds)
        ends = {b"%d-end" % p for p in range(count)}
        for p, publisher in enumerate(publishers):
            publisher.sendString(b"%d-end" % p)
        yield waitFor(lambda: all(ends <= set(inbox) for inbox in inboxes))
        tallies = [tally([m for m in inbox if m not in ends], count, perPublisher) for inbox in inboxes]
        self.assertEqual(
            tallies, [{"received": everything, "duplicates": 0, "outOfOrder": 0, "missing": 0}] * len(inboxes)
        )
        return everything + len(ends)

    @defer.inlineCallbacks
    def allArrive(self, published: int, seconds: float, *inboxes: list[bytes]) -> Any:
        """
        Wait up to C{seconds} until each of C{inboxes} holds C{published}
        messages, then check each with L{assertAllOnceInOrder}.
        """
        yield waitFor(lambda: all(len(inbox) >= published for inbox in inboxes), seconds)
        for inbox in inboxes:
            self.assertAllOnceInOrder(inbox, published)

    def assertAllOnceInOrder(self, inbox: list[bytes], published: int) -> None:
        """
        C{inbox} holds the C{published} messages of one publisher
        (C{0-0} on), each once, in order.
        """
        self.assertEqual(
            tally(inbox, 1, published),
            {"received": published, "duplicates": 0, "outOfOrder": 0, "missing": 0},
        )


class CoreClusterTests(_ClusterMixin, TestCase):
    """
    Three nodes, a publisher and subscribers on each.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_everyMessageOnceInOrder(self):  # type: ignore[no-untyped-def]
        """
        With a publisher on each of three nodes and two subscribers on each,
        every subscriber gets every message exactly once, each publisher's
        in order, whether it was published on its own node or another.
        """
        nats = yield startNats(self)
        nodes = [self.startNode(nats.port) for _ in range(3)]
        yield waitFor(lambda: all(service.cluster.connected for service, _ in nodes))
        withEnds = yield self.publishEverywhere(nodes, 3000, 30)
        # Through NATS: each message once out of its node, and once into each
        # of the two other nodes.

        def counted() -> tuple[int, int]:
            sent = sum(service.cluster.counters.sent for service, _ in nodes)
            received = sum(service.cluster.counters.received for service, _ in nodes)
            return sent, received

        yield waitFor(lambda: counted() == (withEnds, 2 * withEnds))

    @defer.inlineCallbacks
    def test_subjectsAreSeparateStreams(self):  # type: ignore[no-untyped-def]
        """
        Nodes on different C{--cluster-subject}s share a NATS server but not
        their messages.
        """
        nats = yield startNats(self)
        (a, portA), (b, portB), (c, portC) = (
            self.startNode(nats.port, cluster={"subject": subject}) for subject in ("one", "one", "two")
        )
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected and c.cluster.connected)
        onB, onC = yield self.inboxes((b, portB), (c, portC))
        a.hub.publish([b"for stream one"])
        c.hub.publish([b"for stream two"])
        yield waitFor(lambda: onB == [b"for stream one"])
        self.assertEqual(onC, [b"for stream two"])


class ProcessTests(_ClusterMixin, TestCase):
    """
    C{twistd streamd --cluster} as real processes.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_twistdNodes(self):  # type: ignore[no-untyped-def]
        """
        A node started with C{--cluster} and no C{--reactor} runs nats-py on
        the asyncio reactor's loop; one on another reactor runs it in a
        thread; messages cross between them both ways, and both stop
        cleanly on SIGTERM.
        """
        nats = yield startNats(self)
        url = f"nats://127.0.0.1:{nats.port}"
        common = ("--listen", "tcp:0:interface=127.0.0.1", "--source", "none", "--cluster", url)
        shared = spawnTwistd(self, *common)
        threaded = spawnTwistd(self, *common, twistdOptions=("--reactor", "epoll"))
        nodes = (shared, threaded)
        yield defer.gatherResults([node.logged(b"cluster: on NATS") for node in nodes])
        self.assertIn(b"AsyncioSelectorReactor", shared.output)
        self.assertIn(b"nats-py on the reactor's asyncio loop", shared.output)
        self.assertIn(b"nats-py on an asyncio loop in a thread", threaded.output)
        inboxes: list[list[bytes]] = [[], []]
        clients = []
        for node, inbox in zip(nodes, inboxes, strict=True):
            port = yield node.listening
            assert port is not None
            clients.append((yield self.client(port, inbox)))
        yield defer.gatherResults([node.logged(b"connected (1 connected)") for node in nodes])
        clients[0].sendString(b"from the asyncio node")
        clients[1].sendString(b"from the epoll node")
        yield waitFor(lambda: inboxes == [[b"from the epoll node"], [b"from the asyncio node"]])
        for node in nodes:
            assert node.transport is not None
            node.transport.signalProcess("TERM")
        statuses = yield defer.gatherResults([node.ended for node in nodes])
        # twistd ends by the signal once it has shut down in order.
        self.assertEqual(statuses, [(None, signal.SIGTERM)] * 2)
        self.assertTrue(all(b"Server Shut Down." in node.output for node in nodes))


class LargeMessageTests(_ClusterMixin, TestCase):
    """
    Messages larger than the NATS server's C{max_payload}.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_largerThanMaxPayload(self):  # type: ignore[no-untyped-def]
        """
        A message larger than C{max_payload} crosses to the other node in
        parts, joined whole, in order with the small ones around it.
        """
        conf = os.path.join(tempfile.mkdtemp(), "nats.conf")
        with open(conf, "w") as f:
            f.write("max_payload: 4096\n")
        nats = yield startNats(self, -1, "-c", conf)
        server = ServerConfig(maxMessageSize=100_000)
        (a, portA), (b, portB) = (
            self.startNode(nats.port, server=server),
            self.startNode(nats.port, server=server),
        )
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onB: list[bytes] = []
        yield self.client(portB, onB)
        publisher = yield self.client(portA)
        yield waitFor(lambda: len(b.hub.subscribers) == 1 and len(a.hub.subscribers) == 1)
        large = bytes(range(256)) * 300
        publisher.sendString(b"before")
        publisher.sendString(large)
        publisher.sendString(b"after")
        yield waitFor(lambda: len(onB) == 3)
        self.assertEqual(onB, [b"before", large, b"after"])


class FaultTests(_ClusterMixin, TestCase):
    """
    NATS unreachable at start, and lost mid-stream.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_unreachableAtStart(self):  # type: ignore[no-untyped-def]
        """
        With no NATS server, the node starts, serves its clients, says so
        in the log and keeps trying; once NATS is up it joins.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        port = freePort()
        service, clientPort = self.startNode(port)
        (received,) = yield self.inboxes((service, clientPort))
        service.hub.publish([b"local"])
        yield waitFor(lambda: received == [b"local"])
        yield waitFor(lambda: any("cannot reach NATS" in e["log_format"] for e in logged))
        self.assertFalse(service.cluster.connected)
        yield startNats(self, port)
        yield waitFor(lambda: service.cluster.connected)

    @defer.inlineCallbacks
    def test_healthzShowsTheLink(self):  # type: ignore[no-untyped-def]
        """
        C{/healthz} answers 200 whether or not the node is on NATS (it
        serves its own clients either way), and says which in C{cluster}.
        """
        import json

        from twisted.web.client import Agent, readBody

        port = freePort()
        service, _ = self.startNode(port, http=(LOOPBACK,))
        httpPort = service.listeners[-1].port.getHost().port

        @defer.inlineCallbacks
        def health() -> Any:
            response = yield Agent(reactor).request(b"GET", b"http://127.0.0.1:%d/healthz" % httpPort)
            body = yield readBody(response)
            return response.code, json.loads(body)

        code, body = yield health()
        self.assertEqual((code, body["ok"], body["cluster"]["state"]), (200, True, "retrying"))
        yield startNats(self, port)
        yield waitFor(lambda: service.cluster.connected)
        code, body = yield health()
        self.assertEqual((code, body["cluster"]["state"], body["cluster"]["mode"]), (200, "connected", "core"))
        self.assertEqual(body["cluster"]["server"], f"127.0.0.1:{port}")

    @defer.inlineCallbacks
    def test_stopWhileUnreachable(self):  # type: ignore[no-untyped-def]
        """
        A node that never reached NATS stops promptly.
        """
        service, _ = self.startNode(freePort())
        yield service.stopService()
        self.assertFalse(service.cluster.connected)

    @defer.inlineCallbacks
    def test_linkFailsForGood(self):  # type: ignore[no-untyped-def]
        """
        An error that ends the link (here a CA file that holds no
        certificate) is logged as critical; the node goes on serving its
        own clients.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        ca = os.path.join(tempfile.mkdtemp(), "ca.pem")
        with open(ca, "w") as f:
            f.write("not a certificate\n")
        service, port = self.startNode(freePort(), cluster={"ca": ca})
        yield waitFor(lambda: any("link to NATS stopped" in e["log_format"] for e in logged))
        (received,) = yield self.inboxes((service, port))
        service.hub.publish([b"local"])
        yield waitFor(lambda: received == [b"local"])

    @defer.inlineCallbacks
    def test_lostMidStream(self):  # type: ignore[no-untyped-def]
        """
        Killing NATS mid-stream does not stop local delivery; when it is back,
        both nodes report the gap and the stream flows between them again,
        with no duplicates and in order.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        nats = yield startNats(self)
        (a, portA), (b, portB) = self.startNode(nats.port), self.startNode(nats.port)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onA, onB = yield self.inboxes((a, portA), (b, portB))
        ticker = Ticker(self, a.hub)
        yield waitFor(lambda: len(onB) >= 20)
        yield nats.kill()
        yield waitFor(lambda: not a.cluster.connected and not b.cluster.connected)
        onAWhenLost = len(onA)
        yield waitFor(lambda: len(onA) >= onAWhenLost + 50)
        yield startNats(self, nats.port)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onBWhenBack = len(onB)
        yield waitFor(lambda: len(onB) >= onBWhenBack + 20)
        ticker.stop()
        self.assertEqual((a.cluster.counters.gaps, b.cluster.counters.gaps), (1, 1))
        self.assertTrue(any("back on NATS" in e["log_format"] for e in logged))
        last = int(onA[-1].split(b"-")[1])
        self.assertAllOnceInOrder(onA, last + 1)
        got = tally(onB, 1, last + 1)
        self.assertEqual((got["duplicates"], got["outOfOrder"]), (0, 0))
        self.assertGreater(got["missing"], 0)

    @defer.inlineCallbacks
    def test_natsServerOfAClusterDies(self):  # type: ignore[no-untyped-def]
        """
        Nodes given every server of a three-server NATS cluster move to
        another server when theirs dies, report the gap, and the stream
        flows between them again, in order and without duplicates.
        """
        servers = yield startNatsCluster(self, 3)
        ports = [server.port for server in servers]
        (a, _), (b, portB) = self.startNode(*ports), self.startNode(*ports)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        (onB,) = yield self.inboxes((b, portB))
        ticker = Ticker(self, a.hub)
        # The routes between the servers may take a moment.
        yield waitFor(lambda: len(onB) >= 20)
        (dying,) = [s for s in servers if a.cluster.server == f"127.0.0.1:{s.port}"]
        yield dying.kill()
        yield waitFor(lambda: a.cluster.counters.gaps == 1 and a.cluster.connected)
        self.assertNotEqual(a.cluster.server, f"127.0.0.1:{dying.port}")
        received = len(onB)
        yield waitFor(lambda: len(onB) >= received + 20)
        ticker.stop()
        got = tally(onB, 1, int(onB[-1].split(b"-")[1]) + 1)
        self.assertEqual((got["duplicates"], got["outOfOrder"]), (0, 0))

    @defer.inlineCallbacks
    def test_slowConsumer(self):  # type: ignore[no-untyped-def]
        """
        A node whose reactor falls behind what NATS delivers drops what is
        over its pending limit, logs the gap, and goes on with the next
        messages.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        nats = yield startNats(self)
        (a, _), (b, portB) = self.startNode(nats.port), self.startNode(nats.port)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        (onB,) = yield self.inboxes((b, portB))
        b.cluster.pendingBytes = 10_000
        # More than one NATS message's worth (max_payload, 1 MiB), however
        # A's link packs it.
        for number in range(3000):
            a.hub.publish([b"0-%d-" % number + b"x" * 1000])
        # Hold the reactor (as a busy node would) until B's link has had to
        # drop some of what NATS delivered.
        deadline = time.monotonic() + 10
        while not b.cluster._slow and time.monotonic() < deadline:
            time.sleep(0.001)
        yield waitFor(lambda: b.cluster.counters.slowDropped > 0)
        # Room again for all that NATS still brings, then the last message.
        b.cluster.pendingBytes = PENDING_BYTES
        yield waitFor(lambda: not b.cluster._in)
        a.hub.publish([b"after"])
        yield waitFor(lambda: onB[-1:] == [b"after"])
        self.assertGreaterEqual(b.cluster.counters.gaps, 1)
        self.assertTrue(any("fell behind NATS" in e["log_format"] for e in logged))
        self.assertLess(len(onB), 3001)

    @defer.inlineCallbacks
    def test_credentials(self):  # type: ignore[no-untyped-def]
        """
        A node joins a NATS server that wants a user and password, the
        password read from a file; with a wrong one it does not join, and
        says why.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        nats = yield startNats(self, -1, "--user", "streamd", "--pass", "s3cret")
        directory = tempfile.mkdtemp()
        good, bad = os.path.join(directory, "good"), os.path.join(directory, "bad")
        for path, secret in ((good, "s3cret\n"), (bad, "wrong\n")):
            with open(path, "w") as f:
                f.write(secret)
        a, _ = self.startNode(nats.port, cluster={"user": "streamd", "passwordFile": good})
        b, _ = self.startNode(nats.port, cluster={"user": "streamd", "passwordFile": bad})
        yield waitFor(lambda: a.cluster.connected)
        yield waitFor(lambda: any("Authorization" in str(e.get("error")) for e in logged))
        self.assertFalse(b.cluster.connected)
