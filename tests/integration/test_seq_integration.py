"""
Integration tests of seq listeners on loopback sockets: the resuming client
of L{streamd.client.seq} against a real daemon whose connections are killed,
and which restarts; the command-line client against a C{twistd streamd}
process that closes its connection for each reason a BYE gives.
"""

from __future__ import annotations

import os
import signal
import tempfile
from itertools import pairwise
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from streamd.client.seq import connect
from streamd.config import DaemonConfig, Listen
from streamd.seqframing import Bye, Gap, GapReason
from streamd.service import StreamdService

from ..support import TwistdProcess, spawnPython, spawnTwistd, startDaemon, waitFor
from .test_client_process import Silent, Spawned

TOTAL = 100_000
BATCH = 50
log = Logger()


def reconnectCounts(published: int, got: list[int]) -> dict[str, int]:
    """
    The figures of a resume test: messages published, received, received
    more than once, and received after a later one.
    """
    outOfOrder = sum(1 for before, after in pairwise(got) if after < before)
    return {
        "published": published,
        "received": len(got),
        "duplicates": len(got) - len(set(got)),
        "outOfOrder": outOfOrder,
    }


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
        and in order.  The counts are logged (and printed) as one line:
        C{seq reconnect test: published 100000, received 100000, ...}.
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
        started = reactor.seconds()
        yield waitFor(lambda: len(got) >= TOTAL, 60)
        counts = reconnectCounts(service.hub.history.nextSequence - 1, got)
        log.info(
            "seq reconnect test: published {published}, received {received}, duplicates {duplicates},"
            " out of order {outOfOrder}, connections killed {kills}, gaps {gaps}, in {seconds:.1f} s",
            kills=kills,
            gaps=len(gaps),
            seconds=reactor.seconds() - started,
            **counts,
        )
        print(
            f"\nseq reconnect test: published {counts['published']}, received {counts['received']},"
            f" duplicates {counts['duplicates']}, out of order {counts['outOfOrder']},"
            f" connections killed {kills}, gaps {len(gaps)}"
        )
        self.assertEqual(
            counts, {"published": TOTAL, "received": TOTAL, "duplicates": 0, "outOfOrder": 0}
        )
        self.assertEqual(gaps, [])
        self.assertEqual(got, list(range(1, TOTAL + 1)))
        self.assertGreater(kills, 20)

    @inlineCallbacks
    def test_ownMessagesNotReplayed(self) -> Any:
        """
        A client that published, then lost its connection before anything
        else came, resumes without getting its own messages back (it is not
        sent them live either), and gets the others'.
        """
        service, port = seqDaemon(self)
        got: list[tuple[int, bytes]] = []
        client = connect(
            reactor, f"tcp:host=127.0.0.1:port={port}", lambda seq, payload: got.append((seq, payload)),
            retryPolicy=lambda attempt: 0.01,
        )
        self.addCleanup(client.stop)
        protocol = yield client.whenConnected()
        yield waitFor(lambda: protocol.hello is not None)
        protocol.sendString(b"mine 1")
        protocol.sendString(b"mine 2")
        yield waitFor(lambda: service.hub.history.nextSequence == 3)
        protocol.transport.abortConnection()
        yield protocol.finished
        resumed = yield client.whenConnected()
        yield waitFor(lambda: resumed.hello is not None)
        service.hub.publish([b"theirs"])
        yield waitFor(lambda: got)
        self.assertEqual(got, [(3, b"theirs")])

    @inlineCallbacks
    def test_daemonRestart(self) -> Any:
        """
        When the daemon restarts, the client reports that its position is
        lost with a GAP, and goes on with the new daemon's stream from its
        first message: nothing the new daemon published is skipped.
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
        yield waitFor(lambda: len(got) == 6)
        self.assertEqual([bye.code for bye in byes], [11])
        self.assertEqual(gaps, [(Gap(1, 0, GapReason.RESTARTED), 3)])
        self.assertEqual(got, [1, 2, 3, 1, 2, 3])


class _ProcessMixin:
    """
    A real C{twistd streamd} process with one seq listener, and real
    C{python -m streamd.client --framing seq} processes against it.
    """

    timeout = 60
    addCleanup: Any

    @inlineCallbacks
    def daemon(self, *argv: str) -> Any:
        """
        Start the daemon with C{argv} besides its seq listener; fires with
        the process and its port once it listens.
        """
        process = spawnTwistd(self, "--listen", "tcp:0:interface=127.0.0.1:framing=seq", "--source", "none", *argv)
        port = yield process.listening
        return process, port

    def client(self, port: int, *argv: str) -> Spawned:
        """
        Run the seq client against C{port} with C{argv}; killed if the test
        leaves it running.
        """
        return spawnPython(self, ("-m", "streamd.client", "--framing", "seq", "--port", str(port), *argv), Spawned())

    def tempFile(self, text: str) -> str:
        """
        A file holding C{text}, removed when the test ends.
        """
        fd, path = tempfile.mkstemp(prefix="streamd-seq-")
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path


class ByeProcessTests(_ProcessMixin, TestCase):
    """
    Whenever the daemon closes a seq connection, the command-line client
    prints the reason of its BYE as one line on stderr, and no traceback.
    """

    @inlineCallbacks
    def assertBye(self, client: Spawned, daemon: TwistdProcess, line: str, code: int) -> Any:
        """
        C{client} ends with status C{code}, having printed only C{line} on
        stderr; the daemon wrote no traceback.
        """
        status = yield client.ended
        self.assertEqual((client.err.decode(), status.exitCode), (f"streamd.client: {line}\n", code))
        self.assertNotIn(b"Traceback", daemon.output)

    @inlineCallbacks
    def test_readOnly(self) -> Any:
        """
        A client of a --read-only daemon that publishes is told it may not.
        """
        daemon, port = yield self.daemon("--read-only")
        client = self.client(port, "--send", "hello")
        yield self.assertBye(client, daemon, "disconnected by the server: this client may not publish (read_only)", 1)

    @inlineCallbacks
    def test_wrongToken(self) -> Any:
        """
        A client whose token is not the --auth-token-file's is told so.
        """
        daemon, port = yield self.daemon("--auth-token-file", self.tempFile("sesame\n"))
        client = self.client(port, "--token-file", self.tempFile("guess\n"))
        yield self.assertBye(client, daemon, "disconnected by the server: wrong token (auth_failed)", 1)

    @inlineCallbacks
    def test_oversizedFrame(self) -> Any:
        """
        A client that publishes a message over the daemon's
        --max-message-size is told its frame was too large.
        """
        daemon, port = yield self.daemon("--max-message-size", "100")
        client = self.client(port, "--send", "x" * 200)
        yield self.assertBye(
            client, daemon, "disconnected by the server: sent a frame over the size limit (oversized_frame)", 1
        )

    @inlineCallbacks
    def test_slowConsumer(self) -> Any:
        """
        A client that stops reading (stopped with SIGSTOP) while others
        publish is cut once it is --max-pending behind; woken, it reads what
        its connection held, then the BYE, and says why it was cut.
        """
        yield self.assertCutWhenStopped(
            ("--max-pending", "65536"), "too far behind (--max-pending) (max_pending)"
        )

    @inlineCallbacks
    def test_evicted(self) -> Any:
        """
        With --seq-evicted disconnect, a stopped client whose position
        leaves the --history is cut with BYE EVICTED instead of skipping
        ahead with a GAP.
        """
        yield self.assertCutWhenStopped(
            ("--seq-evicted", "disconnect", "--history", "200000"), "fell out of the history (evicted)"
        )

    @inlineCallbacks
    def assertCutWhenStopped(self, options: tuple[str, ...], reason: str) -> Any:
        """
        Stop a client with SIGSTOP, flood a daemon run with C{options} until
        it logs that the client is too slow, wake the client: it reads what
        its connection held, then prints the BYE's C{reason}.
        """
        daemon, port = yield self.daemon(*options)
        client = self.client(port)
        yield daemon.logged(b"starts at message 1 (newest)")
        client.transport.signalProcess(signal.SIGSTOP)
        self.addCleanup(lambda: None if client.ended.called else client.transport.signalProcess(signal.SIGCONT))
        publisher = connect(reactor, f"tcp:host=127.0.0.1:port={port}", lambda seq, payload: None, resume=False)
        self.addCleanup(publisher.stop)
        protocol = yield publisher.whenConnected()
        flood = LoopingCall(lambda: [protocol.sendString(b"m" * 1000) for _ in range(100)])
        flood.start(0.01)
        yield daemon.logged(b"is too slow")
        flood.stop()
        client.transport.signalProcess(signal.SIGCONT)
        yield self.assertBye(client, daemon, f"disconnected by the server: {reason}", 1)
        self.assertGreater(len(client.out.splitlines()), 0)

    @inlineCallbacks
    def test_shutdown(self) -> Any:
        """
        A client whose daemon is stopped with SIGTERM gets what was published
        before, then is told the daemon is shutting down, and ends with
        status 0.
        """
        daemon, port = yield self.daemon()
        client = self.client(port, "--show-seq")
        yield daemon.logged(b"starts at message 1 (newest)")
        publisher = connect(reactor, f"tcp:host=127.0.0.1:port={port}", lambda seq, payload: None, resume=False)
        self.addCleanup(publisher.stop)
        protocol = yield publisher.whenConnected()
        for n in range(1, 4):
            protocol.sendString(b"before %d" % n)
        yield waitFor(lambda: client.out.count(b"\n") == 3)
        daemon.transport.signalProcess("TERM")
        yield self.assertBye(client, daemon, "disconnected by the server: the daemon is shutting down (shutdown)", 0)
        self.assertEqual(client.out, b"1 before 1\n2 before 2\n3 before 3\n")
        yield daemon.ended


class VersionThreeProcessTests(_ProcessMixin, TestCase):
    """
    What version 3 gives the command-line client: the daemon's largest
    message, and knowing that what it published was taken.
    """

    @inlineCallbacks
    def test_sendConfirmed(self) -> Any:
        """
        C{--send X --count 0} exits 0 once the daemon has taken the message:
        another client has it by then.
        """
        daemon, port = yield self.daemon()
        got: list[bytes] = []
        reader = connect(reactor, f"tcp:host=127.0.0.1:port={port}", lambda seq, payload: got.append(payload))
        self.addCleanup(reader.stop)
        protocol = yield reader.whenConnected()
        yield waitFor(lambda: protocol.hello is not None)
        sender = self.client(port, "--send", "taken", "--count", "0")
        status = yield sender.ended
        self.assertEqual((sender.err, status.exitCode), (b"", 0))
        yield waitFor(lambda: got == [b"taken"])

    @inlineCallbacks
    def test_sendRefused(self) -> Any:
        """
        C{--send X --count 0} to a C{--read-only} daemon says why it was
        refused and exits 1 (it exited 0, as if the message had been sent).
        """
        daemon, port = yield self.daemon("--read-only")
        sender = self.client(port, "--send", "refused", "--count", "0")
        status = yield sender.ended
        self.assertEqual(
            (sender.err.decode(), status.exitCode),
            ("streamd.client: disconnected by the server: this client may not publish (read_only)\n", 1),
        )

    @inlineCallbacks
    def test_largerMessages(self) -> Any:
        """
        A client with the default limit (1 MiB) reads a 1.5 MB message from
        a daemon whose C{--max-message-size} allows it, as the HELLO says,
        instead of dropping the connection (and, resuming, every next one).
        """
        daemon, port = yield self.daemon("--max-message-size", "2000000")
        reader = self.client(port, "--count", "1")
        yield daemon.logged(b"starts at message 1 (newest)")
        publisher = connect(reactor, f"tcp:host=127.0.0.1:port={port}", lambda seq, payload: None, resume=False,
                            maxMessageSize=2000000)  # fmt: skip
        self.addCleanup(publisher.stop)
        protocol = yield publisher.whenConnected()
        protocol.sendString(b"x" * 1_500_000)
        status = yield reader.ended
        self.assertEqual((reader.err, status.exitCode, len(reader.out)), (b"", 0, 1_500_001))


class TimeoutProcessTests(_ProcessMixin, TestCase):
    """
    The seq command-line client gives up after --timeout, as the int32 one
    does, and says what the port may be.
    """

    @inlineCallbacks
    def test_noHello(self) -> Any:
        """
        At a port that accepts the connection but never answers its HELLO
        (a TLS port, or one that is not a seq listener), the client gives up
        after --timeout with one line, and status 1.
        """
        accepted: list[Silent] = []

        def build() -> Silent:
            accepted.append(Silent())
            return accepted[-1]

        listening = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port
        client = self.client(port, "--timeout", "0.5")
        status = yield client.ended
        self.assertEqual(
            (client.err.decode(), status.exitCode),
            (
                f"streamd.client: no HELLO from 127.0.0.1:{port} within 0.5 s: is it a seq listener"
                " (framing=seq), or a TLS port (use --tls)?\n",
                1,
            ),
        )
        yield gatherResults([protocol.lost for protocol in accepted])
