"""
What a NATS user who is not a streamd node can do to the cluster, against a
real nats-server: each forged input of issue #25 is injected with nats-py on
the cluster's subject, and the nodes drop it, count it by reason in
C{/metrics} and say so in the log (throttled); with a shared key
(C{--cluster-key-file}) nothing unsigned gets through.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from streamd.cluster.guard import Drop
from streamd.cluster.jetstream import FIRST, MSG_ID
from streamd.cluster.wire import NODE, PART
from streamd.config import DEFAULT_SUBJECT, ServerConfig
from streamd.framing import INT32

from ..natsupport import inject, startNats
from ..support import waitFor
from .test_cluster import LOOPBACK, _ClusterMixin, tally
from .test_cluster_jetstream import _JetStreamMixin

SMALL = ServerConfig(maxMessageSize=65_536)
DEFAULT = f"{DEFAULT_SUBJECT}.default"
"""
The subject of the stream C{default}.
"""


def keyFile(secret: str = "the cluster's key") -> str:
    """
    A key file of mode 0600 holding C{secret}.
    """
    path = os.path.join(tempfile.mkdtemp(), "cluster.key")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(secret + "\n")
    return path


class CoreGuardTests(_ClusterMixin, TestCase):
    """
    Core mode: what a NATS user publishes on the subject.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_oversizedAndMalformed(self):  # type: ignore[no-untyped-def]
        """
        A message over C{--max-message-size}, and bytes that are not
        int32 frames, are dropped and counted; the stream goes on.
        """
        nats = yield startNats(self)
        service, port = self.startNode(nats.port, server=SMALL)
        yield waitFor(lambda: service.cluster.connected)
        (received,) = yield self.inboxes((service, port))
        yield inject(
            self, nats.port, DEFAULT,
            [(INT32.encode(b"x" * 500_000), None), (b"\x00\x00\x00\x09cut", None), (INT32.encode(b"after"), None)],
        )  # fmt: skip
        yield waitFor(lambda: received == [b"after"])
        self.assertEqual(service.cluster.dropped.counts, {Drop.TOO_LARGE: 1, Drop.NOT_FRAMES: 1})

    @defer.inlineCallbacks
    def test_forgedPartsBounded(self):  # type: ignore[no-untyped-def]
        """
        First parts of large messages that never finish, from many forged
        node identities, hold no more than the total allowed, and are
        freed when their time is up (the issue's 307 MiB, never released).
        """
        nats = yield startNats(self)
        service, _ = self.startNode(nats.port)
        yield waitFor(lambda: service.cluster.connected)
        joiner = service.cluster.joiner
        joiner.totalBytes, joiner.seconds = 2_000_000, 1.0
        forged = [(b"p" * 500_000, {NODE: f"{n:016x}", PART: "1:0/100"}) for n in range(10)]
        yield inject(self, nats.port, DEFAULT, forged)
        counts = service.cluster.dropped.counts
        yield waitFor(lambda: counts[Drop.PART_MEMORY] + counts[Drop.PART_TIMEOUT] == 10)
        self.assertEqual(joiner.held, 0)
        self.assertGreater(counts[Drop.PART_MEMORY], 0)
        self.assertGreater(counts[Drop.PART_TIMEOUT], 0)

    @defer.inlineCallbacks
    def test_forgedPartDoesNotSpoil(self):  # type: ignore[no-untyped-def]
        """
        Parts forged in a node's name, of another frame, injected among the
        parts of that node's large message, are dropped: the message
        arrives whole.
        """
        conf = os.path.join(tempfile.mkdtemp(), "nats.conf")
        with open(conf, "w") as f:
            f.write("max_payload: 4096\n")
        nats = yield startNats(self, -1, "-c", conf)
        server = ServerConfig(maxMessageSize=200_000)
        (a, _), (b, portB) = self.startNode(nats.port, server=server), self.startNode(nats.port, server=server)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        (onB,) = yield self.inboxes((b, portB))
        large = bytes(range(256)) * 600
        forged = [(b"evil", {NODE: a.cluster.node, PART: f"ff:{i}/50"}) for i in range(1, 50)]
        a.hub.publish([large])
        yield inject(self, nats.port, DEFAULT, forged)
        yield waitFor(lambda: b.cluster.dropped.counts[Drop.BAD_PART] == 49)
        yield waitFor(lambda: onB == [large])

    @defer.inlineCallbacks
    def test_keyKeepsOthersOut(self):  # type: ignore[no-untyped-def]
        """
        With C{--cluster-key-file} on every node, a NATS user's message
        (which would bypass C{--read-only} and tokens) is dropped as
        unsigned; the nodes' own messages cross as before.  The drop is in
        C{/metrics}, and logged a few times, not once per message.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        nats = yield startNats(self)
        key = {"cluster": {"keyFile": keyFile()}}
        (a, _), (b, portB) = self.startNode(nats.port, **key), self.startNode(nats.port, http=(LOOPBACK,), **key)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        (onB,) = yield self.inboxes((b, portB))
        yield inject(self, nats.port, DEFAULT, [(INT32.encode(b"injected"), None)] * 20)
        a.hub.publish([b"0-0"])
        yield waitFor(lambda: onB == [b"0-0"] and b.cluster.dropped.counts[Drop.UNSIGNED] == 20)
        lines = [e for e in logged if e.get("log_source") is b.cluster.dropped]
        self.assertLessEqual(len(lines), 6)
        metrics = yield scrape(b)
        self.assertIn(b'streamd_cluster_rejected_total{reason="unsigned"} 20.0', metrics)

    @defer.inlineCallbacks
    def test_otherKey(self):  # type: ignore[no-untyped-def]
        """
        A node with another key is, to the others, one more NATS user:
        what it sends is dropped.
        """
        nats = yield startNats(self)
        a, _ = self.startNode(nats.port, cluster={"keyFile": keyFile("one key")})
        b, portB = self.startNode(nats.port, cluster={"keyFile": keyFile("another")})
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        (onB,) = yield self.inboxes((b, portB))
        a.hub.publish([b"from a"])
        yield waitFor(lambda: b.cluster.dropped.counts[Drop.UNSIGNED] == 1)
        self.assertEqual(onB, [])


@defer.inlineCallbacks
def scrape(service: Any) -> Any:
    """
    C{/metrics} of C{service}'s last listener (an C{--http} one).
    """
    from twisted.web.client import Agent, readBody

    port = service.listeners[-1].port.getHost().port
    response = yield Agent(reactor).request(b"GET", b"http://127.0.0.1:%d/metrics" % port)
    return (yield readBody(response))


class JetStreamGuardTests(_JetStreamMixin, TestCase):
    """
    JetStream mode: what a NATS user publishes into the stream.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_oversizedInTheStream(self):  # type: ignore[no-untyped-def]
        """
        A 500,000-byte message injected into the stream with streamd's
        headers, to nodes whose limit is 65,536 bytes, is dropped on both
        (it keeps its number: a gap), and the stream goes on.
        """
        nats = yield self.startJetStream()
        (a, portA), (b, portB) = self.startNode(nats.port, server=SMALL), self.startNode(nats.port, server=SMALL)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onA, onB = yield self.inboxes((a, portA), (b, portB))
        huge = {MSG_ID: "0123456789abcdef-1", FIRST: "1"}
        yield inject(self, nats.port, DEFAULT, [(INT32.encode(b"x" * 500_000), huge)])
        yield waitFor(lambda: a.cluster.numbers.get("default") == b.cluster.numbers.get("default") == 2)
        a.hub.publish([b"after"])
        yield waitFor(lambda: onA == onB == [b"after"])
        self.assertEqual([c.cluster.dropped.counts for c in (a, b)], [{Drop.TOO_LARGE: 1}] * 2)
        self.assertEqual([c.hub.history.nextSequence for c in (a, b)], [3, 3])

    @defer.inlineCallbacks
    def test_forgedIdsDropNothing(self):  # type: ignore[no-untyped-def]
        """
        Twenty messages forged in node A's name, with the ids A's messages
        would have had before (its node and a count), injected ahead of
        A's own: A drops them as forged (it did not send them), and every
        one of A's twenty messages reaches both nodes' clients, once, in
        order (they were all dropped as duplicates before).
        """
        nats = yield self.startJetStream()
        (a, portA), (b, portB) = self.startNode(nats.port), self.startNode(nats.port)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onA, onB = yield self.inboxes((a, portA), (b, portB))
        forged = [(INT32.encode(b"forged"), {MSG_ID: f"{a.cluster.node}-{n}", FIRST: "1"}) for n in range(1, 21)]
        yield inject(self, nats.port, DEFAULT, forged)
        yield waitFor(lambda: a.cluster.expected == b.cluster.expected == 21)
        for n in range(20):
            a.hub.publish([b"0-%d" % n])
        yield waitFor(lambda: len([m for m in onB if m != b"forged"]) == 20)
        yield waitFor(lambda: len([m for m in onA if m != b"forged"]) == 20)
        for inbox in (onA, onB):
            self.assertEqual(tally([m for m in inbox if m != b"forged"], 1, 20)["missing"], 0)
        self.assertEqual(a.cluster.dropped.counts[Drop.FORGED], 1)
        self.assertEqual(a.cluster.dropped.counts[Drop.STALE], 19)

    @defer.inlineCallbacks
    def test_keyKeepsOthersOut(self):  # type: ignore[no-untyped-def]
        """
        With a key, messages injected into the stream (even with streamd's
        headers) are dropped on every node, and the nodes number their own
        alike.
        """
        nats = yield self.startJetStream()
        key = {"cluster": {"keyFile": keyFile()}}
        (a, portA), (b, portB) = self.startNode(nats.port, **key), self.startNode(nats.port, **key)
        yield waitFor(lambda: a.cluster.connected and b.cluster.connected)
        onA, onB = yield self.inboxes((a, portA), (b, portB))
        forged = {MSG_ID: "0123456789abcdef-1", FIRST: "1"}
        yield inject(self, nats.port, DEFAULT, [(INT32.encode(b"injected"), forged)])
        a.hub.publish([b"mine"])
        yield waitFor(lambda: onA == onB == [b"mine"])
        self.assertEqual([c.cluster.dropped.counts for c in (a, b)], [{Drop.UNSIGNED: 1}] * 2)
        self.assertEqual(a.hub.history.nextSequence, b.hub.history.nextSequence)
