"""
Integration tests of seq listeners on loopback sockets: the resuming client
of L{streamd.client.seq} against a real daemon whose connections are killed,
and which restarts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from streamd.client.seq import connect
from streamd.seqframing import Bye, Gap, GapReason
from streamd.service import DaemonConfig, Listen, StreamdService

from ..support import startDaemon, waitFor

TOTAL = 100_000
BATCH = 50


def seqDaemon(case: TestCase, port: int = 0) -> tuple[StreamdService, int]:
    """
    A daemon with one seq listener and no sources.
    """
    return startDaemon(case, DaemonConfig(listens=(Listen(f"tcp:{port}:interface=127.0.0.1", _seq()),), sources=()))


def _seq() -> Any:
    from streamd.seqframing import SEQ

    return SEQ


class ResumeTests(TestCase):
    """
    A resuming client gets every message exactly once, in order.
    """

    @inlineCallbacks
    def test_killedConnections(self) -> Any:
        """
        Its TCP connection killed every few hundred messages during a
        100,000-message stream, the client still delivers each message once
        and in order.
        """
        service, port = seqDaemon(self)
        got: list[int] = []
        gaps: list[Gap] = []
        kills = 0

        def publish() -> None:
            first = service.hub.history.nextSequence
            if first <= TOTAL:
                service.hub.publish([b"%d" % seq for seq in range(first, min(first + BATCH, TOTAL + 1))])

        def kill() -> None:
            nonlocal kills
            kills += 1
            client.whenConnected().addCallback(lambda protocol: protocol.transport.abortConnection())

        def onMessage(seq: int, payload: bytes) -> None:
            got.append(int(payload))
            if len(got) % 300 == 0:
                kill()

        client = connect(
            reactor, f"tcp:host=127.0.0.1:port={port}", onMessage,
            onGap=lambda gap, previous: gaps.append(gap), retryPolicy=lambda attempt: 0.01,
        )
        self.addCleanup(client.stop)
        protocol = yield client.whenConnected()
        yield waitFor(lambda: protocol.hello is not None)
        publisher = LoopingCall(publish)
        publisher.start(0.001)
        self.addCleanup(publisher.stop)
        yield waitFor(lambda: len(got) >= TOTAL, 60)
        self.assertEqual(gaps, [])
        self.assertEqual(got, list(range(1, TOTAL + 1)))
        self.assertGreater(kills, 20)

    @inlineCallbacks
    def test_daemonRestart(self) -> Any:
        """
        When the daemon restarts, the client reports that its position is
        lost with a GAP, and goes on with the new daemon's stream.
        """
        service, port = seqDaemon(self)
        got: list[int] = []
        gaps: list[tuple[Gap, int | None]] = []
        byes: list[Bye] = []
        client = connect(
            reactor, f"tcp:host=127.0.0.1:port={port}", lambda seq, payload: got.append(seq),
            onGap=lambda gap, previous: gaps.append((gap, previous)), onBye=byes.append,
        )
        self.addCleanup(client.stop)
        protocol = yield client.whenConnected()
        yield waitFor(lambda: protocol.hello is not None)
        service.hub.publish([b"a", b"b", b"c"])
        yield waitFor(lambda: len(got) == 3)
        yield service.stopService()
        restarted, _ = seqDaemon(self, port)
        restarted.hub.publish([b"x", b"y"])
        yield waitFor(lambda: len(gaps) == 1, 15)
        restarted.hub.publish([b"z"])
        yield waitFor(lambda: len(got) == 4)
        self.assertEqual([bye.code for bye in byes], [11])
        self.assertEqual(gaps, [(Gap(1, 2, GapReason.RESTARTED), 3)])
        self.assertEqual(got, [1, 2, 3, 3])
