"""
Named streams across a cluster, against a real nats-server: two streams on
three nodes, in core and in JetStream mode; a node's signed message replayed
on another stream's subject; a node restarted in JetStream mode catching up
each stream.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from streamd.client.seq import connect as seqConnect
from streamd.cluster.guard import Drop
from streamd.cluster.jetstream import EXPECTED_LAST_SEQUENCE, streamEpoch
from streamd.config import DEFAULT_SUBJECT, Listen
from streamd.fanout.hub import Hub
from streamd.seqframing import SEQ
from streamd.service import StreamdService

from ..docblocks import ROOT
from ..natsupport import capture, inject, startNats, withNats
from ..support import Ticker, frames, waitFor
from .test_cluster import LOOPBACK, _ClusterMixin, freePort
from .test_cluster_guard import keyFile
from .test_cluster_jetstream import _JetStreamMixin, numbered

STREAMS = {"s.a": b"a", "s.b": b"b"}
"""
The two streams, and the tag of their messages (C{a0-7}: stream C{s.a},
publisher 0, its message 7).
"""


def streamListens(seqPort: int = 0) -> tuple[Listen, ...]:
    """
    An C{int32} listener bound to each of the two streams, and a C{seq}
    listener on C{seqPort} (0: any).
    """
    return (
        Listen(LOOPBACK, stream="s.a"),
        Listen(LOOPBACK, stream="s.b"),
        Listen(f"tcp:{seqPort}:interface=127.0.0.1", SEQ),
    )


def ports(service: StreamdService) -> list[int]:
    """
    The ports of C{service}'s listeners, in the order of L{streamListens}.
    """
    return [listener.port.getHost().port for listener in service.listeners]  # type: ignore[union-attr]


def stream(service: StreamdService, name: str) -> Hub:
    hub = service.streams.get(name)
    assert hub is not None, name
    return hub


class _StreamsMixin(_ClusterMixin):
    """
    Checks of what subscribers of the two streams receive.
    """

    assertTrue: Any

    def assertEachOnceInOrder(self, inbox: list[bytes], tag: bytes, publishers: int, perPublisher: int) -> None:
        """
        C{inbox} holds exactly the C{perPublisher} messages of each of
        C{publishers} publishers to the stream of C{tag}: each once, in its
        publisher's order, and nothing of another stream.
        """
        sent: dict[int, list[int]] = {p: [] for p in range(publishers)}
        for message in inbox:
            self.assertEqual(message[:1], tag, message)
            publisher, number = map(int, message[1:].split(b"-"))
            sent[publisher].append(number)
        self.assertEqual(sent, {p: list(range(perPublisher)) for p in range(publishers)})

    def patternClient(self, port: int) -> list[tuple[str, int, bytes]]:
        """
        A C{seq} client of the pattern C{s.*} on C{port}, which resumes
        after 0.1 s when cut off, until the test ends; return the list it
        keeps what it gets in, as (stream, number, message).
        """
        got: list[tuple[str, int, bytes]] = []
        client = seqConnect(
            reactor,
            f"tcp:host=127.0.0.1:port={port}",
            lambda name, seq, message: got.append((name, seq, message)),
            streams=("s.*",),
            retryPolicy=lambda attempt: 0.1,
        )
        self.addCleanup(client.stop)
        return got

    @defer.inlineCallbacks
    def everyStreamEverywhere(self, nodes: list[StreamdService], perPublisher: int, seconds: float) -> Any:
        """
        On each node, a publisher and a subscriber of each stream; on the
        last, a C{seq} client of the pattern C{s.*}.  Each publisher sends
        C{perPublisher} messages, then one to end: check that every
        subscriber gets every message of its stream, from every node,
        once, in each publisher's order, and the pattern's subscriber
        those of both; fire with what the latter got, as (stream, number,
        message).
        """
        count = len(nodes)
        inboxes: dict[str, list[list[bytes]]] = {name: [] for name in STREAMS}
        publishers: dict[str, list[Any]] = {name: [] for name in STREAMS}
        for node in nodes:
            for name, port in zip(STREAMS, ports(node), strict=False):
                inboxes[name].append([])
                yield self.client(port, inboxes[name][-1])
                publishers[name].append((yield self.client(port)))
        patterned = self.patternClient(ports(nodes[-1])[2])

        def subscribed() -> list[int]:
            return [len(stream(node, name).subscribers) for node in nodes for name in STREAMS]

        yield waitFor(lambda: subscribed() == [2] * 2 * (count - 1) + [3, 3])
        for number in range(perPublisher):
            for name, tag in STREAMS.items():
                for p, publisher in enumerate(publishers[name]):
                    publisher.sendString(b"%s%d-%d" % (tag, p, number))
        everything = count * perPublisher

        def arrived() -> bool:
            return all(len(set(inbox)) == everything for each in inboxes.values() for inbox in each) and len(
                {m for _, _, m in patterned}
            ) == 2 * everything

        yield waitFor(arrived, seconds)
        # Each publisher's order means its last message comes after all the
        # others: once every inbox holds its end, extra copies would show.
        ends = {tag + b"end" for tag in STREAMS.values()}
        for name, tag in STREAMS.items():
            for publisher in publishers[name]:
                publisher.sendString(tag + b"end")
        yield waitFor(
            lambda: all(inbox.count(tag + b"end") == count for name, tag in STREAMS.items() for inbox in inboxes[name])
            and sum(m in ends for _, _, m in patterned) == 2 * count
        )
        for name, tag in STREAMS.items():
            for inbox in inboxes[name]:
                self.assertEachOnceInOrder([m for m in inbox if m not in ends], tag, count, perPublisher)
            mine = [m for n, _, m in patterned if n == name]
            self.assertEachOnceInOrder([m for m in mine if m not in ends], tag, count, perPublisher)
        return patterned


class _TwoStreamsMixin(_StreamsMixin):
    """
    The cluster test of named streams, run in each mode: two streams on
    three nodes.
    """

    def startServer(self) -> Any:
        """
        Start a nats-server for the mode; fire with it.
        """
        raise NotImplementedError

    def checkNumbers(self, nodes: list[StreamdService]) -> None:
        """
        Check what the mode promises of the numbers of each stream, which
        every node holds from 1 on.
        """
        raise NotImplementedError

    @defer.inlineCallbacks
    def test_twoStreamsThreeNodes(self):  # type: ignore[no-untyped-def]
        """
        Messages published on each of three nodes to two streams reach the
        subscribers of each stream on every node, once, in order, and a
        pattern subscriber (C{s.*}) gets both, under the numbers of its
        node; every NATS message carries one stream's messages, on its
        subject; and the numbers are as the mode promises.
        """
        nats = yield self.startServer()
        spy = yield capture(self, nats.port, f"{DEFAULT_SUBJECT}.>")
        nodes = [self.startNode(nats.port, listens=streamListens())[0] for _ in range(3)]
        yield waitFor(lambda: all(node.cluster.connected for node in nodes))
        patterned = yield self.everyStreamEverywhere(nodes, 300, 40)
        for subject, data, _ in spy.messages:
            tags = {bytes(m[:1]) for m in frames(data)}
            self.assertEqual(tags, {STREAMS[subject.partition(".")[2]]}, subject)
        for name in STREAMS:
            self.assertEqual([(seq, m) for n, seq, m in patterned if n == name], numbered(nodes[-1], name))
            for node in nodes:
                self.assertEqual([seq for seq, _ in numbered(node, name)], list(range(1, 3 * 300 + 3 + 1)))
        self.checkNumbers(nodes)


class CoreStreamsTests(_TwoStreamsMixin, TestCase):
    """
    Core mode: each stream on its own subject.
    """

    timeout = 60

    def startServer(self) -> Any:
        return startNats(self)

    def checkNumbers(self, nodes: list[StreamdService]) -> None:
        """
        Each node numbers each stream on its own: nothing more to check.
        """

    @defer.inlineCallbacks
    def test_replayOnAnotherStream(self):  # type: ignore[no-untyped-def]
        """
        With a key, a NATS user who replays a node's signed message of one
        stream on another stream's subject gets it dropped as unsigned;
        the other stream goes on untouched.
        """
        nats = yield startNats(self)
        spy = yield capture(self, nats.port, f"{DEFAULT_SUBJECT}.s.a")
        key = {"cluster": {"keyFile": keyFile()}}
        a, _ = self.startNode(nats.port, listens=streamListens(), **key)
        b, _ = self.startNode(nats.port, listens=streamListens(), **key)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onA, onB = [], []  # type: ignore[var-annotated]
        yield self.client(ports(b)[0], onA)
        yield self.client(ports(b)[1], onB)
        yield waitFor(lambda: len(stream(b, "s.a").subscribers) == len(stream(b, "s.b").subscribers) == 1)
        stream(a, "s.a").publish([b"for a"])
        yield waitFor(lambda: onA == [b"for a"] and spy.messages)
        ((_, data, headers),) = spy.messages
        yield inject(self, nats.port, f"{DEFAULT_SUBJECT}.s.b", [(data, headers)])
        yield waitFor(lambda: b.cluster.dropped.counts[Drop.UNSIGNED] == 1)
        stream(a, "s.b").publish([b"for b"])
        yield waitFor(lambda: onB == [b"for b"])
        self.assertEqual(onA, [b"for a"])


class JetStreamStreamsTests(_TwoStreamsMixin, _JetStreamMixin, TestCase):
    """
    JetStream mode: each stream numbered alike on every node.
    """

    timeout = 90

    def startServer(self) -> Any:
        return self.startJetStream()

    def checkNumbers(self, nodes: list[StreamdService]) -> None:
        """
        Every node numbers each stream alike, under an epoch of that
        stream's.
        """
        cluster = nodes[0].cluster.adopted  # type: ignore[union-attr]
        assert cluster is not None
        for name in STREAMS:
            held = [numbered(node, name) for node in nodes]
            self.assertEqual(held[1:], [held[0]] * 2)
            epochs = {stream(node, name).history.epoch for node in nodes}
            self.assertEqual(epochs, {streamEpoch(cluster, name)})

    @defer.inlineCallbacks
    def test_replayOnAnotherStream(self):  # type: ignore[no-untyped-def]
        """
        With a key, a node's signed batch of one stream, copied by a NATS
        user into the JetStream stream on another stream's subject (past
        the stream's window for duplicates), is dropped as unsigned on
        every node, and numbers nothing.
        """
        import asyncio

        from nats.js.api import StorageType, StreamConfig

        nats = yield self.startJetStream()

        async def short(nc: Any) -> None:
            # The nodes' stream, with the shortest window for duplicate ids.
            config = StreamConfig(
                name="streamd-streamd",
                subjects=[f"{DEFAULT_SUBJECT}.>"],
                storage=StorageType.FILE,
                max_bytes=64 * 1024 * 1024,
                duplicate_window=0.1,
            )
            await nc.jetstream().add_stream(config)

        yield withNats(self, nats.port, short)
        spy = yield capture(self, nats.port, f"{DEFAULT_SUBJECT}.s.a")
        key = {"cluster": {"keyFile": keyFile()}}
        a, _ = self.startNode(nats.port, listens=streamListens(), **key)
        b, _ = self.startNode(nats.port, listens=streamListens(), **key)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        stream(a, "s.a").publish([b"for a"])
        yield waitFor(lambda: numbered(b, "s.a") == [(1, b"for a")] and spy.messages)
        ((_, data, headers),) = spy.messages
        copied = {k: v for k, v in (headers or {}).items() if k != EXPECTED_LAST_SEQUENCE}

        async def copy(nc: Any) -> None:
            # Again until the stream no longer takes it for a duplicate.
            while (await nc.jetstream().publish(f"{DEFAULT_SUBJECT}.s.b", data, headers=copied)).duplicate:
                await asyncio.sleep(0.02)

        yield withNats(self, nats.port, copy)
        yield waitFor(lambda: all(node.cluster.dropped.counts[Drop.UNSIGNED] == 1 for node in (a, b)))
        stream(a, "s.b").publish([b"for b"])
        yield waitFor(lambda: all(numbered(node, "s.b") == [(1, b"for b")] for node in (a, b)))

    @defer.inlineCallbacks
    def test_restartedNodeCatchesUpEachStream(self):  # type: ignore[no-untyped-def]
        """
        Node C stops while node A publishes to both streams, and starts
        again (a new process would be the same: nothing of C is kept): it
        reads what it missed of each stream from the JetStream stream,
        numbered as on A; a C{seq} client of C{s.*} that was on C resumes
        on it and gets every message of each stream once, in order, under
        the numbers of A.
        """
        nats = yield self.startJetStream()
        seqPort = freePort()
        a, _ = self.startNode(nats.port, listens=streamListens())
        c, _ = self.startNode(nats.port, listens=streamListens(seqPort))
        yield waitFor(lambda: a.cluster.connected and c.cluster.connected)
        got = self.patternClient(seqPort)
        yield waitFor(lambda: all(len(stream(c, name).subscribers) == 1 for name in STREAMS))
        tickers = {name: Ticker(self, stream(a, name), 0.005, tag) for name, tag in STREAMS.items()}

        def received(name: str) -> int:
            return sum(n == name for n, _, _ in got)

        yield waitFor(lambda: all(received(name) >= 20 for name in STREAMS))
        yield c.stopService()
        stopped = {name: ticker.published for name, ticker in tickers.items()}
        yield waitFor(lambda: all(tickers[name].published >= stopped[name] + 50 for name in STREAMS))
        c, _ = self.startNode(nats.port, listens=streamListens(seqPort))
        yield waitFor(lambda: c.cluster.connected, 20)
        yield waitFor(lambda: all(received(name) > stopped[name] + 50 for name in STREAMS), 20)
        for ticker in tickers.values():
            ticker.stop()
        published = {name: ticker.published for name, ticker in tickers.items()}
        yield waitFor(lambda: all(received(name) >= published[name] for name in STREAMS), 20)
        # A numbers its own messages as it reads them back from the
        # JetStream stream, which may be after C has read them.
        yield waitFor(lambda: all(len(numbered(node, name)) >= published[name] for node in (a, c) for name in STREAMS), 20)
        for name, tag in STREAMS.items():
            mine = [(seq, m) for n, seq, m in got if n == name]
            self.assertEqual(mine, [(seq, b"%s-%d" % (tag, seq - 1)) for seq in range(1, published[name] + 1)])
            self.assertEqual(numbered(c, name), numbered(a, name))

    @defer.inlineCallbacks
    def test_quietStreamAfterItsBatchesLeft(self):  # type: ignore[no-untyped-def]
        """
        A quiet stream's batches all leave the JetStream stream (pushed out
        by a busy one's, past the retention); node C, started since, has
        read nothing of it, and publishes to it: C numbers its message after
        the last that stream had, as A expects, and A delivers it.
        """
        nats = yield self.startJetStream()
        small = {"cluster": {"retentionBytes": 200_000}}
        a, _ = self.startNode(nats.port, listens=streamListens(), **small)
        yield waitFor(lambda: a.cluster.connected)
        stream(a, "s.a").publish([b"q1"])
        stream(a, "s.a").publish([b"q2"])
        yield waitFor(lambda: len(numbered(a, "s.a")) == 2)
        # Rounds of 40 kB, each back before the next: 400 kB in all.
        for busy in range(41, 402, 40):
            stream(a, "s.b").publish([b"x" * 1000] * 40)
            yield waitFor(lambda busy=busy: a.cluster.numbers.get("s.b") == busy)
        c, _ = self.startNode(nats.port, listens=streamListens(), **small)
        yield waitFor(lambda: c.cluster.connected and c.cluster.numbers.get("s.b") == 401)
        self.assertNotIn("s.a", c.cluster.numbers)
        stream(c, "s.a").publish([b"q3"])
        # A may have it before C's own copy is numbered on a busy machine.
        yield waitFor(lambda: len(numbered(a, "s.a")) == 3 and numbered(c, "s.a"))
        self.assertEqual(numbered(a, "s.a"), [(1, b"q1"), (2, b"q2"), (3, b"q3")])
        self.assertEqual(numbered(c, "s.a"), [(3, b"q3")])
        self.assertEqual(a.cluster.dropped.counts, {})


def documentedPermissions() -> list[str]:
    """
    The NATS permissions C{docs/clustering.rst} gives the nodes' user: core
    mode's, then JetStream mode's.
    """
    with open(os.path.join(ROOT, "docs", "clustering.rst")) as f:
        return re.findall(r"^    (permissions: \{\n.*?^    \})$", f.read(), re.M | re.S)


class PermissionsTests(_StreamsMixin, TestCase):
    """
    Nodes whose NATS user may do only what C{docs/clustering.rst} says.
    """

    timeout = 60

    @defer.inlineCallbacks
    def twoNodes(self, user: str, history: str) -> Any:
        """
        A nats-server (with JetStream) whose users C{core} and C{js} have
        the permissions of the docs, and two nodes in C{history} mode as
        C{user}; fire with the server and the nodes once both are on it.
        """
        core, jetstream = documentedPermissions()
        directory = tempfile.mkdtemp()
        conf, password = os.path.join(directory, "nats.conf"), os.path.join(directory, "password")
        with open(password, "w") as f:
            f.write("s3cret\n")
        with open(conf, "w") as f:
            f.write(
                f'jetstream {{ store_dir: "{directory}" }}\n'
                "accounts { STREAMD { jetstream: enabled, users: [\n"
                f"  {{ user: core, password: s3cret, {core} }}\n"
                f"  {{ user: js, password: s3cret, {jetstream} }}\n"
                "] } }\n"
            )
        nats = yield startNats(self, -1, "-c", conf)
        cluster = {"user": user, "passwordFile": password, "history": history}
        a, _ = self.startNode(nats.port, listens=streamListens(), cluster=cluster)
        b, _ = self.startNode(nats.port, listens=streamListens(), cluster=cluster)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        return nats, a, b

    @defer.inlineCallbacks
    def bothWays(self, nats: Any, a: StreamdService, b: StreamdService) -> Any:
        """
        Messages of two streams cross from each node to the other, a new
        stream included, and the server saw no violation of permissions.
        """
        stream(a, "s.a").publish([b"a1"])
        stream(b, "s.b").publish([b"b1"])
        b.streams.open("s.c").publish([b"c1"])
        yield waitFor(
            lambda: [m for _, m in numbered(b, "s.a")] == [b"a1"]
            and [m for _, m in numbered(a, "s.b")] == [b"b1"]
            and a.streams.get("s.c") is not None
            and [m for _, m in numbered(a, "s.c")] == [b"c1"]
        )
        self.assertNotIn(b"Violation", nats.log)

    @defer.inlineCallbacks
    def test_core(self):  # type: ignore[no-untyped-def]
        """
        Core mode needs only the prefix's subjects.
        """
        nats, a, b = yield self.twoNodes("core", "core")
        yield self.bothWays(nats, a, b)

    @defer.inlineCallbacks
    def test_jetStream(self):  # type: ignore[no-untyped-def]
        """
        JetStream mode needs only the documented API subjects besides: the
        nodes make both JetStream streams, read, publish, and look up a new
        stream's numbers.
        """
        nats, a, b = yield self.twoNodes("js", "jetstream")
        yield self.bothWays(nats, a, b)
        # A node counts its own message once it reads it back from the
        # stream, which may be after the other node did.
        expected = [{"s.a": 2, "s.b": 2, "s.c": 2}] * 2
        yield waitFor(
            lambda: [a.cluster.numbers, b.cluster.numbers] == expected,
            details=lambda: [a.cluster.numbers, b.cluster.numbers],
        )
        # Enough for the server to ask the consumers for flow control.
        for _ in range(64):
            stream(a, "s.a").publish([b"x" * 500_000])
        yield waitFor(lambda: b.cluster.numbers["s.a"] == 66, 30)
        self.assertNotIn(b"Violation", nats.log)
