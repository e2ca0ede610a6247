"""
Several daemons sharing one JetStream stream of a real nats-server
(C{--cluster-history jetstream}): every node holds the same messages under
the same sequence numbers and epoch, and a node cut off from NATS catches up.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from streamd.fanout.history import FIRST
from streamd.service import StreamdService

from ..natsupport import NatsProxy, restartNats, startNats, startNatsCluster
from ..support import ENV, Ticker, spawnTwistd, waitFor
from .test_cluster import _ClusterMixin


def numbered(service: StreamdService, stream: str = "default") -> list[tuple[int, bytes]]:
    """
    Every message the history of the node's stream C{stream} holds, with its
    sequence number.
    """
    hub = service.streams.get(stream)
    assert hub is not None, stream
    history = hub.history
    held = []
    for index in range(history.start, history.end):
        entry = history[index]
        held.extend((entry[FIRST] + i, bytes(p)) for i, p in enumerate(history.payloads(entry)))
    return held


class ClientProcess(ProcessProtocol):
    """
    A C{python -m streamd.client} process: its output lines so far.
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def lines(self) -> list[bytes]:
        """
        The whole lines printed so far.
        """
        return self.out[: self.out.rfind(b"\n") + 1].splitlines()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


def spawnClient(case: Any, *argv: str) -> ClientProcess:
    """
    Start C{python -m streamd.client ARGV}, killed when C{case} ends.
    """
    client = ClientProcess()
    reactor.spawnProcess(  # type: ignore[attr-defined]
        client, sys.executable, (sys.executable, "-m", "streamd.client", *argv), env=ENV
    )

    def kill() -> Any:
        if not client.ended.called:
            client.transport.signalProcess("KILL")  # type: ignore[union-attr]
        return client.ended

    case.addCleanup(kill)
    return client


@defer.inlineCallbacks
def streamState(service: StreamdService) -> Any:
    """
    The JetStream stream's state (first and last sequence numbers, ...),
    asked through C{service}'s link; C{None} if JetStream did not answer
    (a NATS cluster electing the stream's leader).
    """
    link = service.cluster
    assert link is not None
    future = link._loop.submit(link._js.stream_info(link.config.streamName))  # type: ignore[attr-defined]
    yield waitFor(future.done)
    return None if future.exception() is not None else future.result().state


class _JetStreamMixin(_ClusterMixin):
    """
    Nodes in JetStream mode, and a nats-server with JetStream whose store
    lives in a temporary directory.
    """

    def startNode(self, *servers: int, **settings: Any) -> tuple[StreamdService, int]:
        cluster = {"history": "jetstream", "retentionBytes": 64 * 1024 * 1024, **settings.pop("cluster", {})}
        return super().startNode(*servers, cluster=cluster, **settings)

    def startJetStream(self, port: int = -1, store: str | None = None) -> Any:
        """
        nats-server with JetStream, its store in C{store} (a new temporary
        directory by default, so that a restart finds it again).
        """
        self.store = store or tempfile.mkdtemp()
        return startNats(self, port, "-js", "-sd", self.store)


class JetStreamTests(_JetStreamMixin, TestCase):
    """
    Three nodes, a publisher and subscribers on each.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_everyMessageOnceSameNumbers(self):  # type: ignore[no-untyped-def]
        """
        With a publisher on each of three nodes and two subscribers on each,
        every subscriber gets every message exactly once, each publisher's
        in order; every node numbers them alike, under one epoch.
        """
        nats = yield self.startJetStream()
        nodes = [self.startNode(nats.port) for _ in range(3)]
        yield waitFor(lambda: all(service.cluster.connected for service, _ in nodes))
        epochs = {service.hub.history.epoch for service, _ in nodes}
        self.assertEqual(len(epochs), 1)
        published = yield self.publishEverywhere(nodes, 1000, 40)
        held = [numbered(service) for service, _ in nodes]
        self.assertEqual(len(held[0]), published)
        self.assertEqual([h[0] for h in held[0]], list(range(1, published + 1)))
        self.assertEqual(held[1], held[0])
        self.assertEqual(held[2], held[0])
        self.assertEqual(epochs, {service.hub.history.epoch for service, _ in nodes})


class CatchUpTests(_JetStreamMixin, TestCase):
    """
    A node cut off from NATS fills the gap from the stream when it is back.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_natsRestarted(self):  # type: ignore[no-untyped-def]
        """
        NATS killed mid-stream and started again on its store: what each
        node's publisher sent meanwhile waits, enters the stream once NATS
        is back, and every client of both nodes gets every message once, in
        order, with the same numbers on both nodes.
        """
        nats = yield self.startJetStream()
        (a, portA), (b, portB) = self.startNode(nats.port), self.startNode(nats.port)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onA, onB = yield self.inboxes((a, portA), (b, portB))
        ticker = Ticker(self, a.hub)
        yield waitFor(lambda: len(onB) >= 20)
        yield nats.kill()
        yield waitFor(lambda: not a.cluster.connected and not b.cluster.connected)
        whenLost = ticker.published
        yield waitFor(lambda: ticker.published >= whenLost + 50)
        yield self.startJetStream(nats.port, self.store)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected, 20)
        yield waitFor(lambda: len(onB) > whenLost + 70, 20, lambda: (len(onA), len(onB), ticker.published))
        ticker.stop()
        everything = ticker.published
        yield self.allArrive(everything, 20, onA, onB)
        self.assertEqual(numbered(a), numbered(b))
        self.assertEqual([seq for seq, _ in numbered(a)], list(range(1, everything + 1)))


    @defer.inlineCallbacks
    def test_beyondRetention(self):  # type: ignore[no-untyped-def]
        """
        Node B cut off (through a proxy) until the first message it lacks
        has left the stream (1 s retention): once back, its seq client gets
        a GAP (reason CLUSTER) for what left, then the rest: every message
        is received or in a GAP, once, in order, and B numbers them as A.
        """
        from streamd.client.seq import connect as seqConnect
        from streamd.config import ClusterConfig, DaemonConfig, Listen
        from streamd.seqframing import SEQ, Gap, GapReason

        from ..support import startDaemon
        from .test_cluster import LOOPBACK

        nats = yield self.startJetStream()
        proxy = NatsProxy(self, nats.port)
        short = {"retentionAge": 1.0}
        a, _ = self.startNode(nats.port, cluster=short)
        b, portB = startDaemon(
            self,
            DaemonConfig(
                listens=(Listen(LOOPBACK, SEQ),),
                sources=(),
                statsInterval=0,
                cluster=ClusterConfig(
                    (f"nats://127.0.0.1:{proxy.port}",), reconnectWait=0.1, history="jetstream", **short
                ),
            ),
        )
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        got: list[tuple[int, bytes]] = []
        gaps: list[Gap] = []
        client = seqConnect(
            reactor, f"tcp:host=127.0.0.1:port={portB}", lambda seq, m: got.append((seq, m)),
            onGap=lambda gap, previous: gaps.append(gap),
        )  # fmt: skip
        self.addCleanup(client.stop)
        yield client.whenConnected()
        yield waitFor(lambda: len(b.hub.subscribers) == 1)
        ticker = Ticker(self, a.hub)
        yield waitFor(lambda: len(got) >= 20)
        yield proxy.cut()
        yield waitFor(lambda: not b.cluster.connected)
        while True:
            state = yield streamState(a)
            if state is not None and state.first_seq > b.cluster.expected:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        proxy.open()
        yield waitFor(lambda: b.cluster.connected and gaps)
        ticker.stop()
        published = ticker.published
        yield waitFor(lambda: a.hub.history.nextSequence == published + 1)
        yield waitFor(lambda: got[-1][0] == published)
        self.assertTrue(all(gap.reason == GapReason.CLUSTER for gap in gaps), gaps)
        seqs = [seq for seq, _ in got]
        self.assertEqual(seqs, sorted(set(seqs)))
        missed = {s for gap in gaps for s in range(gap.first, gap.last + 1)}
        self.assertEqual(sorted(missed | set(seqs)), list(range(1, published + 1)))
        self.assertFalse(missed & set(seqs))
        self.assertEqual(got, [(seq, b"0-%d" % (seq - 1)) for seq in seqs])

class FailoverTests(_JetStreamMixin, TestCase):
    """
    A seq client resumes on another node when its own dies.
    """

    timeout = 90
    log = Logger()

    @defer.inlineCallbacks
    def test_clientMovesToAnotherNode(self):  # type: ignore[no-untyped-def]
        """
        C{python -m streamd.client --framing seq --resume} given nodes A and
        B (twistd processes) reads from A; A is killed (SIGKILL) while a
        third node publishes; the client resumes on B with the same epoch
        and numbers, and gets every message exactly once: none lost, none
        twice, in order.
        """
        nats = yield self.startJetStream()
        url = f"nats://127.0.0.1:{nats.port}"
        argv = (
            "--listen", "tcp:0:interface=127.0.0.1:framing=seq", "--source", "none",
            "--cluster", url, "--cluster-history", "jetstream",
        )  # fmt: skip
        a, b = spawnTwistd(self, *argv), spawnTwistd(self, *argv)
        yield defer.gatherResults([node.logged(b"cluster: on NATS") for node in (a, b)])
        portA, portB = (yield a.listening), (yield b.listening)
        publisher, _ = self.startNode(nats.port)
        yield waitFor(lambda: publisher.cluster.connected)
        client = spawnClient(
            self,
            "--framing", "seq", "--resume", "--show-seq",
            "--connect", f"tcp:host=127.0.0.1:port={portA}",
            "--connect", f"tcp:host=127.0.0.1:port={portB}",
        )  # fmt: skip
        yield a.logged(b"starts at message")
        ticker = Ticker(self, publisher.hub, 0.002, b"m")
        yield waitFor(lambda: len(client.lines()) >= 200, 20)
        assert a.transport is not None
        a.transport.signalProcess("KILL")
        yield a.ended
        yield b.logged(b"starts at message")
        atMove = ticker.published
        yield waitFor(lambda: ticker.published >= atMove + 200, 20)
        ticker.stop()
        published = ticker.published
        last = b"m-%d" % (published - 1)
        yield waitFor(lambda: any(line.endswith(b" " + last) for line in client.lines()), 20)
        lines = client.lines()
        payloads = [line.split(b" ", 1)[1] for line in lines]
        seqs = [int(line.split(b" ", 1)[0]) for line in lines]
        numbers = [int(p.split(b"-")[1]) for p in payloads]
        counts = {
            "published": published,
            "received": len(payloads),
            "duplicates": len(payloads) - len(set(payloads)),
            "lost": published - len(set(payloads)),
        }
        self.log.info(
            "failover: published {published}, received {received}, duplicates {duplicates}, lost {lost}",
            **counts,
        )
        self.assertEqual(counts, {"published": published, "received": published, "duplicates": 0, "lost": 0})
        self.assertEqual(numbers, list(range(published)))
        # The stream numbered them; A and B alike, under one epoch.
        self.assertEqual(seqs, list(range(1, published + 1)))
        self.assertNotIn(b"gap", client.err.lower())


class NatsClusterTests(_JetStreamMixin, TestCase):
    """
    A stream kept by three routed nats-servers (three replicas).
    """

    timeout = 90

    @defer.inlineCallbacks
    def startCluster(self) -> Any:
        servers = yield startNatsCluster(self, 3, jetstream=True)
        # JetStream elects its meta leader once the routes are up.
        yield waitFor(lambda: all(b"JetStream cluster" in s.log for s in servers), 20)
        return servers

    @defer.inlineCallbacks
    def test_serverKilled(self):  # type: ignore[no-untyped-def]
        """
        Two nodes given every server; the server node A publishes through
        is killed mid-stream: A moves to another, and both nodes' clients
        get every message once, in order, under the same numbers.
        """
        servers = yield self.startCluster()
        ports = [server.port for server in servers]
        replicated = {"cluster": {"replicas": 3}}
        (a, portA), (b, portB) = self.startNode(*ports, **replicated), self.startNode(*ports, **replicated)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected, 30)
        onA, onB = yield self.inboxes((a, portA), (b, portB))
        ticker = Ticker(self, a.hub)
        yield waitFor(lambda: len(onB) >= 50, 20)
        (dying,) = [s for s in servers if a.cluster.server == f"127.0.0.1:{s.port}"]
        yield dying.kill()
        atKill = ticker.published
        yield waitFor(lambda: a.cluster.connected and len(onB) >= atKill + 50, 30)
        ticker.stop()
        published = ticker.published
        yield self.allArrive(published, 30, onA, onB)
        self.assertEqual(numbered(a), numbered(b))

    @defer.inlineCallbacks
    def test_nodeCutOffCatchesUp(self):  # type: ignore[no-untyped-def]
        """
        Node B knows only one server; while that server is down, node A
        goes on publishing into the stream through the others; when it is
        back, B reads what it missed from the stream: its client misses
        nothing, and B numbers every message as A does.
        """
        servers = yield self.startCluster()
        replicated = {"cluster": {"replicas": 3}}
        onlyB = servers[2]
        (a, portA) = self.startNode(servers[0].port, servers[1].port, **replicated)
        (b, portB) = self.startNode(onlyB.port, **replicated)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected, 30)
        (onB,) = yield self.inboxes((b, portB))
        ticker = Ticker(self, a.hub)
        yield waitFor(lambda: len(onB) >= 50, 20)
        yield onlyB.kill()
        yield waitFor(lambda: not b.cluster.connected)
        cutOff = ticker.published
        yield waitFor(lambda: a.hub.history.nextSequence > cutOff + 100, 20)
        self.assertLess(len(onB), a.hub.history.nextSequence - 50)
        yield restartNats(self, onlyB)
        yield waitFor(lambda: b.cluster.connected, 30)
        ticker.stop()
        published = ticker.published
        yield self.allArrive(published, 30, onB)
        # A gets its own messages back from the stream too.
        yield waitFor(lambda: a.hub.history.nextSequence == published + 1)
        self.assertEqual(numbered(a), numbered(b))



class FaultTests(_JetStreamMixin, TestCase):
    """
    JetStream mode when NATS cannot serve it.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_noJetStream(self):  # type: ignore[no-untyped-def]
        """
        On a nats-server without JetStream the node says so and keeps
        trying, and what is published here waits for the stream; once the
        node gives up the link (at shutdown, or on an error), the hub numbers
        its own messages again.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        nats = yield startNats(self)
        service, port = self.startNode(nats.port)
        yield waitFor(lambda: any("JetStream does not serve the stream yet" in e["log_format"] for e in logged), 20)
        self.assertFalse(service.cluster.connected)
        (received,) = yield self.inboxes((service, port))
        service.hub.publish([b"waits"])
        self.assertEqual(service.hub.history.nextSequence, 1)
        service.cluster._failedForGood("test")
        service.hub.publish([b"local"])
        yield waitFor(lambda: received == [b"local"])
        self.assertEqual(service.cluster.health()["state"], "stopped")

