"""
What a connection is allowed and owed, tested once and run over every
transport (C{int32}, C{ascii10}, C{seq}, WebSocket, SSE): tokens, rights,
limits, goodbyes, resuming, gaps, and the counter and the log line each
reason moves.  A rule that holds on one transport and not on another is a
red test here.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import tempfile
import weakref
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import DaemonConfig, FlowControl, ServerConfig
from streamd.fanout.hub import SWEEP_INTERVAL
from streamd.fanout.resume import Gap, GapReason, Start
from streamd.reasons import Reason
from streamd.seqserver import SeqServerProtocol
from streamd.server import StreamServerProtocol
from streamd.service import STOP_SIGNALS, StreamdService
from streamd.session import (
    AHEAD_RETRY,
    AHEAD_WAIT,
    BYE_GRACE,
    CONNECTION_LINES,
    MAX_UNANSWERED_PINGS,
    ISessionAdapter,
    Session,
)
from streamd.web.framing import SHUTDOWN_RETRY_MS
from streamd.web.sse import EventStream
from streamd.web.websocket import StreamWebSocketProtocol

from .sessionclients import (
    OTHER_EPOCH,
    ASCII10Client,
    Client,
    Daemon,
    EventsClient,
    EventsStreamsClient,
    FramedClient,
    SeqClient,
    StreamsClient,
    WebSocketClient,
    WebSocketStreamsClient,
    refusal,
)
from .webtools import EPOCH, cancelBatchedTimers

SECRET = b"open-sesame-7d1f"
PUBLISHER = b"publisher-secret-99c2"


class _Behaviour:
    """
    How a test talks to one transport: its client, and what it can be told.
    """

    client: type[Client]
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any
    assertIsNone: Any
    assertNotIn: Any
    addCleanup: Any
    mktemp: Any

    def setUp(self) -> None:
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.addCleanup(cancelBatchedTimers)

    def connect(self, daemon: Daemon, **settings: Any) -> Client:
        client = self.client(daemon, **settings)
        self.addCleanup(lambda: client.closed or client.lose())
        return client

    def tokenFile(self, token: bytes) -> TokenFile:
        descriptor, path = tempfile.mkstemp(prefix="streamd-token-")
        self.addCleanup(os.remove, path)
        with os.fdopen(descriptor, "wb") as f:
            f.write(token)
        return TokenFile(path)

    def warnings(self) -> list[str]:
        return [formatEvent(event) for event in self.log if event["log_level"] >= LogLevel.warn]

    def told(self, reason: Reason, streaming: bool) -> Reason | int | None:
        """
        What a client of this transport is told when it is dropped for
        C{reason}, before its stream started or after.
        """
        return reason

    def assertDropped(self, daemon: Daemon, client: Client, reason: Reason, streaming: bool = True) -> None:
        """
        C{client} was dropped for C{reason}: told so as its protocol can
        say it, closed, counted once under that reason and nowhere else,
        and logged in one line (at shutdown, in none).
        """
        self.assertEqual(client.heard().goodbye, self.told(reason, streaming))
        self.assertTrue(client.closed)
        self.assertEqual(daemon.stats.disconnects[reason], 1)
        self.assertEqual(sum(daemon.stats.disconnects.values()), 1)
        lines = [line for line in self.warnings() if line.startswith(client.peer + " ")]
        self.assertEqual(len(lines), 0 if reason is Reason.SHUTDOWN else 1, lines)


class _ReadingMixin(_Behaviour):
    """
    What every subscriber is owed, on every transport.
    """

    def test_stream(self) -> None:
        """
        A client gets what is published after it connects, is counted while
        connected, and its leaving is logged once.
        """
        daemon = Daemon()
        client = self.connect(daemon)
        daemon.publish(b"one", b"two")
        self.assertEqual(client.heard().messages, [b"one", b"two"])
        self.assertEqual((daemon.stats.connections, len(daemon.connections)), (1, 1))
        client.lose()
        self.assertEqual((daemon.stats.connections, len(daemon.connections)), (0, 0))
        lines = [formatEvent(event) for event in self.log]
        self.assertEqual(len([line for line in lines if " disconnected: " in line]), 1)

    def test_rightToken(self) -> None:
        """
        With C{--auth-token-file}, a client that presents the token gets
        the stream.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, access=AccessPolicy(auth=self.tokenFile(SECRET))))
        client = self.connect(daemon, token=SECRET)
        daemon.publish(b"for readers")
        self.assertEqual(client.heard().messages, [b"for readers"])
        self.assertEqual(sum(daemon.stats.disconnects.values()), 0)

    def test_wrongToken(self) -> None:
        """
        A wrong token is refused: nothing of the stream, one count under
        C{auth_failed}, one line, and neither token in the log.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, access=AccessPolicy(auth=self.tokenFile(SECRET))))
        client = self.connect(daemon, token=b"guess-0000")
        daemon.publish(b"secret stream")
        self.assertEqual(client.heard().messages, [])
        self.assertDropped(daemon, client, Reason.AUTH_FAILED, streaming=self.client.tokenInBand)
        logged = "\n".join(formatEvent(event) for event in self.log)
        self.assertNotIn("guess-0000", logged)
        self.assertNotIn(SECRET.decode(), logged)

    def test_maxClients(self) -> None:
        """
        The client over C{--max-clients} is refused, counted and logged;
        the others keep their stream.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, maxClients=1))
        first = self.connect(daemon)
        refused = self.connect(daemon)
        daemon.publish(b"still here")
        self.assertEqual(first.heard().messages, [b"still here"])
        self.assertEqual(refused.heard().messages, [])
        self.assertDropped(daemon, refused, Reason.MAX_CLIENTS, streaming=False)
        self.assertEqual(len(daemon.connections), 1)

    def test_slowConsumer(self) -> None:
        """
        A client more than C{--max-pending} behind is cut, counted under
        C{max_pending}; another client gets everything.
        """
        daemon = Daemon(flow=FlowControl(maxBehind=200))
        slow = self.connect(daemon)
        steady = self.connect(daemon)
        slow.pause()
        for n in range(20):
            daemon.publish(b"message %02d" % n)
        daemon.clock.advance(SWEEP_INTERVAL)
        self.assertDropped(daemon, slow, Reason.MAX_PENDING)
        self.assertEqual(len(steady.heard().messages), 20)

    def test_evictedCut(self) -> None:
        """
        With C{--seq-evicted disconnect}, a client whose position left the
        history is cut, counted under C{evicted}.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, seqGaps=False), FlowControl(history=100))
        slow = self.connect(daemon)
        slow.pause()
        daemon.clock.advance(2 * FlowControl.stallTimeout)
        for n in range(20):
            daemon.publish(b"message %02d" % n)
        daemon.clock.advance(SWEEP_INTERVAL)
        self.assertDropped(daemon, slow, Reason.EVICTED)

    def test_shutdownGoodbye(self) -> None:
        """
        At shutdown a client that is behind gets its backlog first, then
        the goodbye; counted under C{shutdown}, logged by nobody per client.
        """
        daemon = Daemon()
        client = self.connect(daemon)
        client.pause()
        daemon.publish(b"a", b"b")
        client.session.close()
        daemon.publish(b"after the close")
        self.assertFalse(client.closed)
        client.resume()
        heard = client.heard()
        self.assertEqual(heard.messages[:2], [b"a", b"b"])
        self.assertDropped(daemon, client, Reason.SHUTDOWN)

    def test_idle(self) -> None:
        """
        With C{--idle-timeout}, a client that sends and takes nothing for
        that long is cut, counted under C{idle}.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, idleTimeout=30.0))
        client = self.connect(daemon)
        daemon.clock.advance(29)
        self.assertFalse(client.closed)
        daemon.clock.advance(1)
        self.assertDropped(daemon, client, Reason.IDLE)


class _PublishingMixin(_Behaviour):
    """
    The publishing rules, on every transport that publishes.
    """

    def test_publish(self) -> None:
        """
        What a client publishes reaches the others, not itself, and is
        counted as the daemon's input.
        """
        daemon = Daemon()
        sender = self.connect(daemon)
        other = self.connect(daemon)
        sender.publish(b"hello")
        self.assertEqual(other.heard().messages, [b"hello"])
        self.assertEqual(sender.heard().messages, [])
        self.assertEqual((daemon.stats.messagesIn, sender.session.messagesIn), (1, 1))

    def test_readOnly(self) -> None:
        """
        Under C{--read-only} a client that publishes is cut, counted under
        C{read_only}, and its message reaches nobody.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, access=AccessPolicy(readOnly=True)))
        sender = self.connect(daemon)
        other = self.connect(daemon)
        sender.publish(b"not allowed")
        self.assertEqual(other.heard().messages, [])
        self.assertDropped(daemon, sender, Reason.READ_ONLY)

    def test_oversized(self) -> None:
        """
        A message announced over C{--max-message-size} cuts its sender,
        counted under C{oversized_frame}.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, maxMessageSize=1000))
        sender = self.connect(daemon)
        sender.announceOversized(5000)  # type: ignore[attr-defined]
        self.assertDropped(daemon, sender, Reason.OVERSIZED_FRAME)

    def test_lateToken(self) -> None:
        """
        A client that presents no token within C{--auth-timeout} is cut
        then, not before, counted under C{auth_timeout}.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, access=AccessPolicy(auth=self.tokenFile(SECRET))))
        client = self.connect(daemon)
        daemon.clock.advance(4.9)
        self.assertFalse(client.closed)
        daemon.clock.advance(0.1)
        self.assertDropped(daemon, client, Reason.AUTH_TIMEOUT)

    def test_tokenRotated(self) -> None:
        """
        Once the publish token is replaced (SIGHUP), a client that presented
        the old one keeps reading but may no longer publish.
        """
        publish = self.tokenFile(PUBLISHER)
        daemon = Daemon(ServerConfig(heartbeat=None, access=AccessPolicy(publish=publish)))
        sender = self.connect(daemon, token=PUBLISHER)
        other = self.connect(daemon)
        sender.publish(b"before")
        with open(publish.path, "wb") as f:
            f.write(b"the-new-publisher-token")
        daemon.config.access.reload()
        daemon.connections.reauthorize()
        daemon.publish(b"still reading")
        self.assertEqual(sender.heard().messages, [b"still reading"])
        sender.publish(b"after")
        self.assertEqual(other.heard().messages, [b"before", b"still reading"])
        self.assertDropped(daemon, sender, Reason.READ_ONLY)


class _FramingErrorMixin(_Behaviour):
    """
    A client that sends what its protocol does not allow, on every
    transport whose frames can be malformed.
    """

    def test_malformedFrame(self) -> None:
        """
        A malformed frame cuts its sender, counted under C{bad_frame}; the
        others keep their stream.
        """
        daemon = Daemon()
        sender = self.connect(daemon)
        other = self.connect(daemon)
        sender.sendMalformed()  # type: ignore[attr-defined]
        daemon.publish(b"on")
        self.assertEqual(other.heard().messages, [b"on"])
        self.assertDropped(daemon, sender, Reason.BAD_FRAME)


class _NumberedMixin(_Behaviour):
    """
    Where a stream starts and what it skips, on every transport that
    numbers its messages: the same answers, in each one's dialect.
    """

    answersHeartbeat = True

    def notices(self, client: Client, kind: str) -> list[tuple[Any, ...]]:
        return [notice for notice in client.heard().notices if notice[0] == kind]

    def test_hello(self) -> None:
        """
        A new client is told the number of the next message.
        """
        daemon = Daemon()
        daemon.publish(b"1", b"2")
        client = self.connect(daemon)
        self.assertEqual(self.notices(client, "hello"), [("hello", 3)])

    def test_resumeMidEntry(self) -> None:
        """
        Resuming after message 2 of an entry of three gets 3, then the rest,
        each once, with no gap.
        """
        daemon = Daemon()
        daemon.publish(b"1", b"2", b"3")
        daemon.publish(b"4")
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 2))
        daemon.publish(b"5")
        heard = client.heard()
        self.assertEqual(heard.messages, [b"3", b"4", b"5"])
        self.assertEqual(heard.gaps(), [])
        self.assertEqual(self.notices(client, "hello"), [("hello", 3)])

    def test_resumeAfterRestart(self) -> None:
        """
        Resuming from a previous run's epoch is told its position is gone
        (a C{restarted} gap that covers none of this run's messages) and
        gets every message this run holds: none is skipped silently.
        """
        daemon = Daemon()
        daemon.publish(b"1", b"2")
        client = self.connect(daemon, start=(Start.RESUME, OTHER_EPOCH, 5000))
        daemon.publish(b"3")
        heard = client.heard()
        self.assertEqual(heard.gaps(), [Gap(1, 0, GapReason.RESTARTED)])
        self.assertEqual(heard.messages, [b"1", b"2", b"3"])

    def test_resumeEvicted(self) -> None:
        """
        Resuming from a position that left the history is told the gap,
        then gets everything held.
        """
        daemon = Daemon(flow=FlowControl(history=60))
        for n in range(1, 21):
            daemon.publish(b"m%02d" % n)
        oldest = daemon.hub.history.oldestEntry()
        assert oldest is not None
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 2))
        heard = client.heard()
        self.assertEqual(heard.gaps(), [Gap(3, oldest[0] - 1, GapReason.EVICTED)])
        self.assertEqual(heard.messages, [b"m%02d" % n for n in range(oldest[0], 21)])

    def test_resumeAhead(self) -> None:
        """
        Resuming after a message not published yet is refused with a reason
        that says to come back later, never silently at the newest.
        """
        daemon = Daemon()
        daemon.publish(b"1")
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 9))
        daemon.publish(b"2")
        self.assertEqual(client.heard().messages, [])
        self.assertDropped(daemon, client, Reason.AHEAD)
        self.assertTrue(Reason.AHEAD.reconnect)

    def test_evictedGapCoalesced(self) -> None:
        """
        A client that falls out of the history, again and again while it
        takes nothing, is told one gap over all it missed, then gets the
        rest: not one gap per eviction, and it is not cut.
        """
        daemon = Daemon(flow=FlowControl(history=100))
        client = self.connect(daemon)
        client.pause()
        for n in range(1, 41):
            daemon.publish(b"m%02d" % n)
            daemon.clock.advance(SWEEP_INTERVAL)
        client.resume()
        heard = client.heard()
        (gap,) = heard.gaps()
        self.assertEqual((gap.first, gap.reason), (1, GapReason.EVICTED))
        self.assertEqual(heard.messages, [b"m%02d" % n for n in range(gap.last + 1, 41)])
        self.assertFalse(client.closed)
        self.assertEqual(sum(daemon.stats.disconnects.values()), 0)

    def test_clusterGap(self) -> None:
        """
        Messages of a cluster's stream that never reached this node are a
        C{cluster} gap, in order with the stream.
        """
        daemon = Daemon()
        client = self.connect(daemon)
        daemon.publish(b"1")
        daemon.hub.publish([b"5"], first=5)
        heard = client.heard()
        self.assertEqual(heard.gaps(), [Gap(2, 4, GapReason.CLUSTER)])
        self.assertEqual(heard.messages, [b"1", b"5"])
        kinds = [notice[0] for notice in heard.notices]
        self.assertEqual(kinds, ["hello", "gap"])

    def test_heartbeat(self) -> None:
        """
        A client sent nothing for C{--heartbeat} gets the heartbeat; one
        that can answer and answers neither of two is cut, counted under
        C{no_pong}; one that answers, or cannot, is kept.
        """
        daemon = Daemon(ServerConfig(heartbeat=1.0))
        silent = self.connect(daemon)
        answering = self.connect(daemon)
        for _ in range(4):
            daemon.clock.advance(1.0)
            answering.answerPings()
        self.assertTrue(self.notices(answering, "ping"))
        self.assertFalse(answering.closed)
        if self.answersHeartbeat:
            self.assertDropped(daemon, silent, Reason.NO_PONG)
        else:
            self.assertEqual(len(self.notices(silent, "ping")), 4)
            self.assertFalse(silent.closed)


class _PingingMixin(_Behaviour):
    """
    A client's own pings (a seq PING, a WebSocket ping), on the transports
    that have them: answered while it reads, however many; one that sends
    them while its connection takes nothing is cut (C{ping_flood}), with no
    more than L{MAX_UNANSWERED_PINGS} pongs held for it.
    """

    def pongs(self, client: Client) -> int:
        return sum(notice[0] == "pong" for notice in client.heard().notices)

    def test_pingsAnswered(self) -> None:
        """
        A client that reads gets a pong for each ping it sends in a read
        of its own, and is not cut.
        """
        daemon = Daemon()
        client = self.connect(daemon)
        for _ in range(MAX_UNANSWERED_PINGS * 3):
            client.sendPing()
        self.assertEqual(self.pongs(client), MAX_UNANSWERED_PINGS * 3)
        self.assertFalse(client.closed)

    def test_pingFlood(self) -> None:
        """
        A client whose connection takes nothing is cut after
        L{MAX_UNANSWERED_PINGS} pings without a pong it took (counted, and
        closed within L{BYE_GRACE}), and was given no more than that many
        pongs.
        """
        daemon = Daemon()
        client = self.connect(daemon)
        client.pause()
        for _ in range(MAX_UNANSWERED_PINGS):
            client.sendPing()
        self.assertEqual(daemon.stats.disconnects[Reason.PING_FLOOD], 0)
        for _ in range(MAX_UNANSWERED_PINGS):
            client.sendPing()
        self.assertEqual(daemon.stats.disconnects[Reason.PING_FLOOD], 1)
        self.assertEqual(sum(daemon.stats.disconnects.values()), 1)
        daemon.clock.advance(BYE_GRACE)
        self.assertTrue(client.closed)
        self.assertLessEqual(self.pongs(client), MAX_UNANSWERED_PINGS + 1)


class _WebMixin(_Behaviour):
    """
    What only a web client sends: an origin, and its position in a URL.
    """

    def told(self, reason: Reason, streaming: bool) -> Reason | int | None:
        return reason if streaming else refusal(reason)

    def test_foreignOrigin(self) -> None:
        """
        A page of another origin is refused with 403, counted under
        C{origin}, unless C{--http-origin} lists it.
        """
        daemon = Daemon()
        client = self.connect(daemon, origin="https://evil.example")
        self.assertDropped(daemon, client, Reason.ORIGIN, streaming=False)

    def test_allowedOrigins(self) -> None:
        """
        A page of the daemon's own origin, a listed origin, and a client
        that is not a page (no C{Origin}) get the stream.
        """
        daemon = Daemon(ServerConfig(heartbeat=None, httpOrigins=("https://app.example",)))
        clients = [
            self.connect(daemon, origin="http://localhost:8080"),
            self.connect(daemon, origin="https://app.example"),
            self.connect(daemon),
        ]
        daemon.publish(b"for all")
        self.assertEqual([client.heard().messages for client in clients], [[b"for all"]] * 3)

    def test_linesThrottled(self) -> None:
        """
        However many clients connect in a second, with a token and a
        position to resume from, the log has a line for each of the first
        few only, of each kind (connected, authenticated, where it starts).
        """
        daemon = Daemon(ServerConfig(heartbeat=None, access=AccessPolicy(auth=self.tokenFile(SECRET))))
        daemon.publish(b"1")
        for _ in range(3 * CONNECTION_LINES):
            self.connect(daemon, token=SECRET, start=(Start.RESUME, EPOCH, 1))
        lines = [formatEvent(event) for event in self.log]
        arrivals = [line for line in lines if " connected (" in line or " authenticated (" in line]
        starts = [line for line in lines if " starts at message " in line]
        self.assertEqual((len(arrivals), len(starts), len(lines)), (CONNECTION_LINES, CONNECTION_LINES, 40))

    def test_badPosition(self) -> None:
        """
        A position that does not parse is a 400, counted under
        C{bad_request}: never silently the newest message.
        """
        daemon = Daemon()
        client = self.connect(daemon, query=f"?last=x&epoch={EPOCH}")
        self.assertDropped(daemon, client, Reason.BAD_REQUEST, streaming=False)


class AdapterTests(SynchronousTestCase):
    """
    Every transport's adapter declares what the session needs of it.
    """

    def test_adaptersProvideTheInterface(self) -> None:
        """
        The C{int32}/C{ascii10}, C{seq}, WebSocket and SSE adapters each
        implement every member of L{ISessionAdapter}.
        """
        for adapter in (StreamServerProtocol, SeqServerProtocol, StreamWebSocketProtocol, EventStream):
            self.assertTrue(verifyClass(ISessionAdapter, adapter))


class Int32Tests(_ReadingMixin, _PublishingMixin, SynchronousTestCase):
    """
    The shared behaviour on an C{int32} listener, which has no way to say
    why it closes.
    """

    client = FramedClient

    def told(self, reason: Reason, streaming: bool) -> None:
        return None


class ASCII10Tests(_FramingErrorMixin, Int32Tests):
    """
    The shared behaviour on an C{ascii10} listener.
    """

    client = ASCII10Client


class SeqTests(
    _ReadingMixin, _PublishingMixin, _FramingErrorMixin, _NumberedMixin, _PingingMixin, SynchronousTestCase
):
    """
    The shared behaviour on a C{seq} listener: every goodbye is a BYE.
    """

    client = SeqClient


class StreamsTests(SeqTests):
    """
    The shared behaviour for a C{seq} client of version 4, which
    subscribes to the stream by name: its frames say their stream.
    """

    client = StreamsClient

    def test_resumeAhead(self) -> None:
        """
        Resuming one stream after a message not published yet refuses that
        subscription (a REFUSED that says why), not the connection, which
        goes on with its other streams.
        """
        daemon = Daemon()
        daemon.publish(b"1")
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 9))
        daemon.publish(b"2")
        heard = client.heard()
        self.assertEqual(heard.messages, [])
        self.assertEqual(heard.refusals, ["asked to resume default after message 9, beyond the newest, 1"])
        self.assertFalse(client.closed)

    def clustered(self, daemon: Daemon, epoch: bytes | None = None) -> list[bytes]:
        """
        Make C{daemon}'s stream a JetStream cluster's, as the link does: what
        is published here goes upstream (returned), and the stream's
        numbers come from the cluster; C{epoch}: the cluster's epoch is not
        known yet, and will be C{epoch}.
        """
        upstream: list[bytes] = []
        daemon.hub.upstream = lambda payloads, sender: upstream.extend(map(bytes, payloads))
        if epoch is not None:
            daemon.hub.history.epoch = os.urandom(8)
            daemon.hub.history.awaitingEpoch = True
        return upstream

    def test_resumeAheadOfClusterNodeWaits(self) -> None:
        """
        Resuming a stream of a JetStream cluster after a message this node
        has not received yet waits for it (the node catches up), then
        starts right after it, with no gap and nothing twice.
        """
        daemon = Daemon()
        self.clustered(daemon)
        daemon.hub.publish([b"1"], first=1)
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 3))
        daemon.clock.advance(AHEAD_RETRY)
        daemon.hub.publish([b"2", b"3"], first=2)
        self.assertEqual(client.heard().messages, [])
        daemon.clock.advance(AHEAD_RETRY)
        daemon.hub.publish([b"4"], first=4)
        heard = client.heard()
        self.assertEqual((heard.messages, heard.refusals, heard.notices), ([b"4"], [], [("hello", 4)]))

    def test_resumeBeforeClusterEpochWaits(self) -> None:
        """
        Until the node has its cluster's epoch, a resume from that epoch
        is not a restart: it waits for the epoch and the node's catching
        up, rather than starting over with a RESTARTED gap.
        """
        daemon = Daemon()
        self.clustered(daemon, bytes.fromhex(EPOCH))
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 1))
        daemon.clock.advance(AHEAD_RETRY)
        daemon.hub.history.adoptEpoch(bytes.fromhex(EPOCH))
        daemon.hub.publish([b"1"], first=1)
        daemon.clock.advance(AHEAD_RETRY)
        daemon.hub.publish([b"2"], first=2)
        heard = client.heard()
        self.assertEqual((heard.messages, heard.refusals, heard.notices), ([b"2"], [], [("hello", 2)]))

    def test_resumeAheadOfClusterNodeGivesUp(self) -> None:
        """
        A node that does not reach the position within L{AHEAD_WAIT}
        refuses the subscription, as a single node does at once.
        """
        daemon = Daemon()
        self.clustered(daemon)
        daemon.hub.publish([b"1"], first=1)
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 9))
        daemon.clock.advance(AHEAD_WAIT - 1)
        self.assertEqual(client.heard().refusals, [])
        daemon.clock.pump([AHEAD_RETRY] * int(2 / AHEAD_RETRY))
        heard = client.heard()
        self.assertEqual(heard.refusals, ["asked to resume default after message 9, beyond the newest, 1"])
        self.assertEqual(daemon.clock.getDelayedCalls(), [])
        self.assertFalse(client.closed)

    def test_waitEndsWithTheClient(self) -> None:
        """
        A client that leaves while it waits for a cluster node is not
        started afterwards.
        """
        daemon = Daemon()
        self.clustered(daemon)
        client = self.connect(daemon, start=(Start.RESUME, EPOCH, 2))
        client.lose()
        daemon.hub.publish([b"1", b"2", b"3"], first=1)
        daemon.clock.advance(AHEAD_RETRY)
        self.assertEqual(daemon.hub.figures()["subscribers"], 0)
        self.assertEqual(daemon.clock.getDelayedCalls(), [])


class WebSocketTests(
    _WebMixin, _ReadingMixin, _PublishingMixin, _FramingErrorMixin, _NumberedMixin, _PingingMixin, SynchronousTestCase
):
    """
    The shared behaviour at C{/ws}: a refusal before the stream is an HTTP
    status, a goodbye after it a C{bye} and a close code.
    """

    client = WebSocketClient

    def test_lateToken(self) -> None:
        """
        A client that sends its token as its first message (a browser
        cannot set headers) must do so within C{--auth-timeout}.
        """
        self.client = lambda daemon, **settings: WebSocketClient(daemon, inBand=True, **settings)  # type: ignore[assignment]
        super().test_lateToken()

    def test_ownCounted(self) -> None:
        """
        A client that publishes is told the numbers its messages took, so
        that it can count, and resume after a cut with nothing twice.
        """
        daemon = Daemon()
        sender = self.connect(daemon)
        daemon.publish(b"1")
        sender.publish(b"mine")
        daemon.publish(b"3")
        heard = sender.heard()
        self.assertEqual(heard.messages, [b"1", b"3"])
        self.assertEqual([n for n in heard.notices if n[0] != "hello"], [("own", 2, 2)])
        last = 3
        resumed = self.connect(daemon, start=(Start.RESUME, EPOCH, last))
        daemon.publish(b"4")
        self.assertEqual(resumed.heard().messages, [b"4"])


class EventsTests(_WebMixin, _ReadingMixin, _NumberedMixin, SynchronousTestCase):
    """
    The shared behaviour at C{/events}: a refusal before the stream is an
    HTTP status, a goodbye after it a C{bye} event; the heartbeat is a
    comment nobody answers.
    """

    client = EventsClient
    answersHeartbeat = False


class DrainTests(SynchronousTestCase):
    """
    C{--drain}: at shutdown, every transport's clients are told goodbye
    spread over the window, as NATS's lame-duck mode does, not all at once.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_spread(self) -> None:
        """
        With C{--drain 30}, no client is told at once; the goodbyes come
        over the 30 seconds, each in its transport's dialect, and every
        client has its goodbye by the end; an SSE client is also given a
        random wait before it reconnects.
        """
        daemon = Daemon()
        service = StreamdService(daemon.clock, DaemonConfig(listens=(), sources=(), drain=30.0))
        service.connections = daemon.connections
        service.random = random.Random(22)
        kinds = (FramedClient, SeqClient, WebSocketClient, EventsClient)
        clients: list[Client] = [kind(daemon) for kind in kinds for _ in range(5)]
        done = service.closeConnections(5.0)
        told = []
        for _ in range(30):
            told.append(sum(client.closed for client in clients))
            daemon.clock.advance(1)
        self.assertEqual(told[0], 0)
        self.assertTrue(0 < told[15] < len(clients), told)
        self.assertEqual(sum(client.closed for client in clients), len(clients))
        for client in clients:
            client.lose()
        self.successResultOf(done)
        for client in clients[5:]:
            self.assertEqual(client.heard().goodbye, Reason.SHUTDOWN)
        retry = [line for line in clients[-1].transport.value().split(b"\n") if line.startswith(b"retry: ")]
        low, high = SHUTDOWN_RETRY_MS
        self.assertTrue(low <= int(retry[-1][7:]) <= high, retry)
        self.assertEqual(daemon.clock.getDelayedCalls(), [])

    def test_signalAgain(self) -> None:
        """
        While the daemon stops, SIGINT and SIGTERM are its own: one more
        (an impatient Ctrl-C) closes every client at once, with one line
        saying so, instead of Twisted's "Can't stop reactor that isn't
        running" traceback; the previous handlers are back once it stopped.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        for number, handler in before.items():
            self.addCleanup(signal.signal, number, handler)
        daemon = Daemon()
        service = StreamdService(daemon.clock, DaemonConfig(listens=(), sources=(), drain=30.0))
        service.connections = daemon.connections
        clients: list[Client] = [kind(daemon) for kind in (FramedClient, SeqClient, WebSocketClient, EventsClient)]
        # What the reactor runs from a signal handler, on its next turn.
        later: list[tuple[Any, tuple[Any, ...]]] = []
        daemon.clock.callFromThread = lambda f, *args: later.append((f, args))  # type: ignore[attr-defined]
        stopped = service.stopService()
        self.assertEqual({signal.getsignal(number) for number in STOP_SIGNALS}, {service._stopAgain})
        self.assertNoResult(stopped)
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # type: ignore[operator, misc]
        for f, args in later:
            f(*args)
        self.assertEqual([client.closed for client in clients], [True] * len(clients))
        self.assertIn("SIGINT during shutdown: closing 4 connection(s) now", [formatEvent(e) for e in events])
        for client in clients:
            client.lose()
        self.successResultOf(stopped)
        self.assertEqual({number: signal.getsignal(number) for number in STOP_SIGNALS}, before)

    def test_signalIgnored(self) -> None:
        """
        A stop signal the daemon was started with ignored (C{nohup}, a
        shell's background job) stays ignored while it stops.
        """
        self.addCleanup(signal.signal, signal.SIGINT, signal.signal(signal.SIGINT, signal.SIG_IGN))
        self.addCleanup(signal.signal, signal.SIGTERM, signal.getsignal(signal.SIGTERM))
        daemon = Daemon()
        service = StreamdService(daemon.clock, DaemonConfig(listens=(), sources=()))
        service.connections = daemon.connections
        client = FramedClient(daemon)
        stopped = service.stopService()
        self.assertIs(signal.getsignal(signal.SIGINT), signal.SIG_IGN)
        self.assertEqual(signal.getsignal(signal.SIGTERM), service._stopAgain)
        client.lose()
        self.successResultOf(stopped)


class DepartedTests(SynchronousTestCase):
    """
    A web client's session is let go of with its connection, not at the
    cycle collector's next full collection (5,000 departed connections were
    all still held 4 s later).
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)
        # Log events name their source: none may be kept by an observer.
        self.patch(Session, "log", Logger(observer=lambda event: None))
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    def departed(self, kind: type[Client]) -> tuple[Any, Any]:
        """
        Weak references to the session and adapter of a client of C{kind}
        that got a message and left, as the reactor leaves it: its
        transport's producer and protocol let go.
        """
        daemon = Daemon()
        client = kind(daemon)
        daemon.publish(b"x")
        session = client.session
        assert session is not None
        refs = weakref.ref(session), weakref.ref(session.adapter)
        client.lose()
        client.transport.producer = None
        client.transport.protocol = None
        return refs

    def test_eventStream(self) -> None:
        """
        An SSE client's session, cursor and adapter are freed at once.
        """
        session, adapter = self.departed(EventsClient)
        self.assertIsNone(session())
        self.assertIsNone(adapter())

    def test_webSocket(self) -> None:
        """
        A WebSocket client's session and cursor are freed at once (autobahn
        keeps its own protocol in cycles of its Deferreds).
        """
        session, _ = self.departed(WebSocketClient)
        self.assertIsNone(session())

    def test_framed(self) -> None:
        """
        An int32, ascii10 or seq client's session, cursor and protocol are
        freed at once.
        """
        for kind in (FramedClient, ASCII10Client, SeqClient):
            session, adapter = self.departed(kind)
            self.assertIsNone(session(), kind)
            self.assertIsNone(adapter(), kind)

    def test_severalStreams(self) -> None:
        """
        The session of a client of several streams (seq version 4,
        C{/ws/NAME}, C{/events/NAME}) is freed at once too: its
        subscriptions let go of it.
        """
        for kind in (StreamsClient, WebSocketStreamsClient, EventsStreamsClient):
            session, _ = self.departed(kind)
            self.assertIsNone(session(), kind)


class WebSocketStreamsTests(WebSocketTests):
    """
    The shared behaviour at C{/ws/default}, the path of a WebSocket client
    of several streams: its messages say their stream.
    """

    client = WebSocketStreamsClient
    test_resumeAhead = StreamsTests.test_resumeAhead
    clustered = StreamsTests.clustered
    test_resumeAheadOfClusterNodeWaits = StreamsTests.test_resumeAheadOfClusterNodeWaits
    test_resumeBeforeClusterEpochWaits = StreamsTests.test_resumeBeforeClusterEpochWaits
    test_resumeAheadOfClusterNodeGivesUp = StreamsTests.test_resumeAheadOfClusterNodeGivesUp
    test_waitEndsWithTheClient = StreamsTests.test_waitEndsWithTheClient

    def test_lateToken(self) -> None:
        """
        A client that sends its token as its first message must do so
        within C{--auth-timeout}.
        """
        self.client = lambda daemon, **settings: WebSocketStreamsClient(daemon, inBand=True, **settings)  # type: ignore[assignment]
        _PublishingMixin.test_lateToken(self)


class EventsStreamsTests(EventsTests):
    """
    The shared behaviour at C{/events/default}, the path of an event
    stream of several streams: its event ids say their stream.
    """

    client = EventsStreamsClient
    test_resumeAhead = StreamsTests.test_resumeAhead
    clustered = StreamsTests.clustered
    test_resumeAheadOfClusterNodeWaits = StreamsTests.test_resumeAheadOfClusterNodeWaits
    test_resumeBeforeClusterEpochWaits = StreamsTests.test_resumeBeforeClusterEpochWaits
    test_resumeAheadOfClusterNodeGivesUp = StreamsTests.test_resumeAheadOfClusterNodeGivesUp
    test_waitEndsWithTheClient = StreamsTests.test_waitEndsWithTheClient
