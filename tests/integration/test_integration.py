"""
Integration tests on real loopback sockets (port 0): the daemon in-process,
and C{twistd streamd} and C{python -m streamd.client} as real processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase

from streamd.client import connect
from streamd.config import DaemonConfig, Listen, ServerConfig
from streamd.fanout.hub import MiB
from streamd.framing import INT32
from streamd.listen.listener import ListenFailed
from streamd.reasons import Reason
from streamd.service import StreamdService

from ..support import ENV, daemonRunning, readFile, spawnTwistd, startDaemon, takenPort, twistd, waitFor

TICK = re.compile(rb"^The time is \d+\.\d+(e-\d+)?$")
LOOPBACK = "tcp:0:interface=127.0.0.1"


class Collector:
    """
    Collects messages and fires a Deferred once C{count} have come.
    """

    def __init__(self, count: int) -> None:
        self.messages: list[bytes] = []
        self.count = count
        self.enough: defer.Deferred[list[bytes]] = defer.Deferred()

    def __call__(self, payload: bytes) -> None:
        self.messages.append(payload)
        if len(self.messages) == self.count:
            self.enough.callback(self.messages)


class InProcessTests(TestCase):
    """
    The whole daemon service on the real reactor and real sockets.
    """

    timeout = 15

    def startDaemon(self, **settings: object) -> tuple[StreamdService, int]:
        settings.setdefault("listens", (Listen(LOOPBACK),))
        return startDaemon(self, DaemonConfig(statsInterval=0, **settings))  # type: ignore[arg-type]

    @defer.inlineCallbacks
    def test_ticksAndRelay(self):  # type: ignore[no-untyped-def]
        """
        Clients get clock ticks in the exercise's format, and what one client
        sends reaches the other and not itself.
        """
        service, port = self.startDaemon(interval=0.05)
        endpoint = f"tcp:host=127.0.0.1:port={port}"
        ticks = Collector(2)
        sender = yield connect(reactor, endpoint, ticks)
        heard = Collector(1)
        listener = yield connect(reactor, endpoint, lambda m: heard(m) if not TICK.match(m) else None)
        messages = yield ticks.enough
        self.assertTrue(all(TICK.match(m) for m in messages), messages)
        sender.sendString(b"hello from a client")
        relayed = yield heard.enough
        self.assertEqual(relayed, [b"hello from a client"])
        self.assertNotIn(b"hello from a client", ticks.messages)
        sender.transport.loseConnection()
        listener.transport.loseConnection()
        yield defer.gatherResults([sender.finished, listener.finished])
        yield service.stopService()

    @defer.inlineCallbacks
    def test_shutdownFlushesThenCloses(self):  # type: ignore[no-untyped-def]
        """
        Stopping the daemon delivers what was already published, then closes
        every connection cleanly.
        """
        service, port = self.startDaemon(sources=())
        received = Collector(1000)
        client = yield connect(reactor, f"tcp:host=127.0.0.1:port={port}", received)
        yield waitFor(lambda: len(service.connections) == 1)
        for i in range(1000):
            service.hub.publish([b"%d" % i])
        yield service.stopService()
        yield client.finished
        self.assertEqual(received.messages, [b"%d" % i for i in range(1000)])

    @defer.inlineCallbacks
    def test_noDelay(self):  # type: ignore[no-untyped-def]
        """
        TCP connections have Nagle's algorithm off, so each message leaves at
        once; UNIX connections, which have no such option, are served
        without an error in the log.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = os.path.join(tempfile.mkdtemp(), "s.sock")
        service, port = self.startDaemon(sources=(), listens=(Listen(LOOPBACK), Listen(f"unix:{path}")))
        tcpClient = yield connect(reactor, f"tcp:host=127.0.0.1:port={port}", lambda m: None)
        unixClient = yield connect(reactor, f"unix:path={path}", lambda m: None)
        yield waitFor(lambda: len(service.connections) == 2)
        (server,) = [p for p in service.connections if p.peer != "unix:(client)"]
        self.assertEqual(server.adapter.transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        self.assertEqual(tcpClient.transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        self.assertEqual([e for e in events if e.get("log_level") == LogLevel.error or "log_failure" in e], [])
        for client in (tcpClient, unixClient):
            client.transport.loseConnection()
            yield client.finished
        yield service.stopService()

    @defer.inlineCallbacks
    def test_portInUse(self):  # type: ignore[no-untyped-def]
        """
        Listening on a port that is taken fails at once with a one-line
        reason, rather than leaving a daemon that serves nothing.
        """
        service, port = self.startDaemon(sources=())
        taken = StreamdService(
            reactor, DaemonConfig(listens=(Listen(f"tcp:{port}:interface=127.0.0.1"),), sources=())
        )
        error = self.assertRaises(ListenFailed, taken.listeners[0].privilegedStartService)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}: Address already in use", str(error))
        self.assertIn("Address already in use", str(error))
        yield service.stopService()

    @defer.inlineCallbacks
    def test_oversizedClientDoesNotHurtOthers(self):  # type: ignore[no-untyped-def]
        """
        A client that announces a frame over the limit is dropped, and another
        client keeps receiving.
        """
        service, port = self.startDaemon(sources=(), server=ServerConfig(maxMessageSize=1000))
        heard = Collector(1)
        good = yield connect(reactor, f"tcp:host=127.0.0.1:port={port}", heard)
        bad = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(bad.close)
        bad.sendall(INT32.header(5000) + b"x" * 100)
        # Both were accepted, and the one left is the good one: the bad one is closed.
        stats = service.stats
        yield waitFor(lambda: stats.connectionsTotal == 2 and len(service.connections) == 1)
        try:
            closed = bad.recv(10) == b""
        except ConnectionResetError:
            closed = True
        self.assertTrue(closed)
        service.hub.publish([b"still streaming"])
        self.assertEqual((yield heard.enough), [b"still streaming"])
        self.assertEqual(service.stats.disconnects[Reason.OVERSIZED_FRAME], 1)
        good.transport.loseConnection()
        yield good.finished
        yield service.stopService()

    @defer.inlineCallbacks
    def test_largeMessagesRelayed(self):  # type: ignore[no-untyped-def]
        """
        Messages of several megabytes, which arrive in many reads and leave
        over many sends, are relayed intact and in order with
        the small messages around them.
        """
        config = ServerConfig(maxMessageSize=8 * MiB)
        service, port = self.startDaemon(sources=(), server=config)
        endpoint = f"tcp:host=127.0.0.1:port={port}"
        large = bytes(range(256)) * (6 * MiB // 256)
        messages = [b"before", large, b"between", b"\xab" * (5 * MiB), b"after"]
        heard = Collector(len(messages))
        listener = yield connect(reactor, endpoint, heard, maxMessageSize=8 * MiB)
        sender = yield connect(reactor, endpoint, lambda m: None)
        yield waitFor(lambda: len(service.connections) == 2)
        sender.transport.write(INT32.encodeMany(messages))
        self.assertTrue((yield heard.enough) == messages, "the relayed messages differ from those sent")
        sender.transport.loseConnection()
        listener.transport.loseConnection()
        yield defer.gatherResults([sender.finished, listener.finished])
        yield service.stopService()


def python(*argv: str) -> tuple[str, ...]:
    return (sys.executable, *argv)


class ProcessTests(TestCase):
    """
    The two commands a user runs, as real processes.
    """

    timeout = 30

    def printer(self, port: int, count: int) -> defer.Deferred[tuple[bytes, bytes, int]]:
        """
        A client that prints C{count} messages and exits: its output, error
        output and exit status.
        """
        return getProcessOutputAndValue(
            sys.executable, ("-m", "streamd.client", "--port", str(port), "--count", str(count)), env=ENV
        )

    def stdinSender(self, port: int, *argv: str) -> tuple[ProcessProtocol, defer.Deferred[None], list[bytes]]:
        """
        A client that sends the lines written to its stdin (C{--stdin}): the
        process, a Deferred that fires when it exits, and its error output.
        """
        sender = ProcessProtocol()
        ended: defer.Deferred[None] = defer.Deferred()
        errors: list[bytes] = []
        sender.errReceived = errors.append  # type: ignore[method-assign]
        sender.processEnded = lambda reason: ended.callback(None)  # type: ignore[method-assign]
        command = python("-m", "streamd.client", "--port", str(port), "--count", "0", "--stdin", *argv)
        reactor.spawnProcess(sender, sys.executable, command, env=ENV)
        return sender, ended, errors

    @defer.inlineCallbacks
    def test_twistdAndClient(self):  # type: ignore[no-untyped-def]
        """
        C{twistd -n streamd --port 0} logs its real port; C{python -m
        streamd.client --count 3} prints three ticks and exits 0; SIGTERM shuts
        the daemon down in order (twistd then ends by that signal, as daemons
        should).
        """
        daemon = spawnTwistd(self, "--port", "0", "--interval", "0.1")
        port = yield daemon.listening
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ("-m", "streamd.client", "--port", str(port), "--count", "3"), env=ENV
        )
        self.assertEqual((code, err), (0, b""))
        lines = out.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(all(TICK.match(line) for line in lines), lines)
        daemon.transport.signalProcess("TERM")
        exitCode, exitSignal = yield daemon.ended
        self.assertIn((exitCode, exitSignal), [(0, None), (None, signal.SIGTERM)])
        self.assertIn(b"Main loop terminated", daemon.output)

    @defer.inlineCallbacks
    def test_sendAppearsInOtherClientAndLog(self):  # type: ignore[no-untyped-def]
        """
        A line sent with --stdin by one client is printed by another client and
        logged by the daemon.
        """
        daemon = spawnTwistd(self, "--port", "0", "--source", "none")
        port = yield daemon.listening
        watcher = self.printer(port, 1)
        yield daemon.logged(b"connected (1 connected)")
        sender, sent, _ = self.stdinSender(port)
        sender.transport.write(b"typed by a person\n")
        sender.transport.closeStdin()
        yield sent
        out, err, code = yield watcher
        self.assertEqual((out, err, code), (b"typed by a person\n", b"", 0))
        self.assertIn(b"sent 17 bytes: typed by a person", daemon.output)

    @defer.inlineCallbacks
    def test_stdinLines(self):  # type: ignore[no-untyped-def]
        """
        --stdin sends each line as one message, skips (and says so) a line
        over --max-message-size however the reads cut it, and sends a last
        line that has no newline.
        """
        daemon = spawnTwistd(self, "--port", "0", "--source", "none")
        port = yield daemon.listening
        watcher = self.printer(port, 3)
        yield daemon.logged(b"connected (1 connected)")
        sender, sent, errors = self.stdinSender(port, "--max-message-size", "100")
        sender.transport.write(b"one\n" + b"x" * 3000)
        # Once "one" has come through, the sender has read this whole write
        # (one pipe write under PIPE_BUF), so the long line is cut between reads.
        yield daemon.logged(b"sent 3 bytes: one")
        sender.transport.write(b"TAIL\nthree\nfour")
        sender.transport.closeStdin()
        yield sent
        out, err, code = yield watcher
        self.assertEqual((out, code), (b"one\nthree\nfour\n", 0))
        self.assertIn(b"skipped a 3004-byte line", b"".join(errors))

    @defer.inlineCallbacks
    def test_clientInterrupted(self):  # type: ignore[no-untyped-def]
        """
        Ctrl-C (SIGINT) ends the client with status 130 and nothing on
        stderr: no traceback, no error about the connection it closed.
        """
        daemon = spawnTwistd(self, "--port", "0", "--interval", "0.1")
        port = yield daemon.listening
        client = ProcessProtocol()
        got: list[bytes] = []
        errors: list[bytes] = []
        ended: defer.Deferred[Exception] = defer.Deferred()
        client.outReceived = got.append  # type: ignore[method-assign]
        client.errReceived = errors.append  # type: ignore[method-assign]
        client.processEnded = lambda reason: ended.callback(reason.value)  # type: ignore[method-assign]
        transport = reactor.spawnProcess(
            client, sys.executable, python("-m", "streamd.client", "--port", str(port)), env=ENV
        )
        yield waitFor(lambda: got)
        transport.signalProcess("INT")
        status = yield ended
        self.assertEqual(status.exitCode, 130)
        self.assertEqual(b"".join(errors), b"")
        self.assertTrue(TICK.match(b"".join(got).splitlines()[0]))

    @defer.inlineCallbacks
    def test_clientUnknownHost(self):  # type: ignore[no-untyped-def]
        """
        A host name that does not resolve gives one line and exit 1.
        """
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ("-m", "streamd.client", "--host", "no-such-host.invalid"), env=ENV
        )
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(b"streamd.client: cannot connect", err)

    @defer.inlineCallbacks
    def test_tokens(self):  # type: ignore[no-untyped-def]
        """
        With --auth-token-file, a client with the right token (from
        $STREAMD_TOKEN) gets ticks; one without it, or with a wrong one, gets
        nothing, exits 1, and what it sent is neither relayed nor logged; the
        token never appears in the log.
        """
        workdir = tempfile.mkdtemp()
        tokenPath = os.path.join(workdir, "token")
        with open(tokenPath, "w") as f:
            f.write("s3cret-token\n")
        daemon = spawnTwistd(self, "--port", "0", "--interval", "0.1", "--auth-token-file", tokenPath)
        port = yield daemon.listening
        client = ("-m", "streamd.client", "--port", str(port))
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, (*client, "--count", "1"), env={**ENV, "STREAMD_TOKEN": "s3cret-token"}
        )
        self.assertEqual(code, 0, err)
        self.assertTrue(TICK.match(out.strip()), out)
        for token in ("wrong", ""):
            out, err, code = yield getProcessOutputAndValue(
                sys.executable,
                (*client, "--count", "0", "--send", "injected by " + (token or "nobody")),
                env={**ENV, "STREAMD_TOKEN": token},
            )
            self.assertEqual((out, code), (b"", 1), err)
        # The daemon has read all it will from the three clients once it has
        # logged their disconnections.
        yield waitFor(lambda: daemon.output.count(b" disconnected: ") == 3, details=lambda: daemon.output)
        self.assertNotIn(b"injected", daemon.output)
        self.assertNotIn(b"s3cret", daemon.output)
        self.assertIn(b"sent a wrong token; disconnecting", daemon.output)

    @defer.inlineCallbacks
    def test_addressInUse(self):  # type: ignore[no-untyped-def]
        """
        An address already in use ends twistd with a one-line message and a
        non-zero status, not a traceback.
        """
        port = takenPort(self)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, twistd("-n", "--pidfile=", "streamd", "--port", str(port)), env=ENV
        )
        self.assertNotEqual(code, 0)
        self.assertNotIn(b"Traceback", out + err)
        message = f"streamd: cannot listen on 127.0.0.1:{port}: Address already in use".encode()
        self.assertEqual(len([line for line in (out + err).splitlines() if message in line]), 1)

    @defer.inlineCallbacks
    def test_unixSocketInMissingDirectory(self):  # type: ignore[no-untyped-def]
        """
        A UNIX socket in a directory that does not exist is one line that
        names it, without the bytes of its lock file.
        """
        path = os.path.join(self.mktemp(), "streamd.sock")
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, twistd("-n", "--pidfile=", "streamd", "--listen", f"unix:{path}"), env=ENV
        )
        self.assertEqual(code, 1)
        lines = [line for line in (out + err).decode().splitlines() if "cannot listen" in line]
        self.assertEqual(len(lines), 1, out + err)
        self.assertTrue(lines[0].endswith(f"streamd: cannot listen on unix:{path}: No such file or directory"), lines)

    @defer.inlineCallbacks
    def test_usageError(self):  # type: ignore[no-untyped-def]
        """
        A bad option ends twistd with a one-line message and a pointer to
        --help (not the whole usage), and status 2.
        """
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, twistd("-n", "streamd", "--interval", "0"), env=ENV
        )
        self.assertEqual((code, out), (2, b""))
        self.assertEqual(
            err.splitlines(),
            [
                b"twistd streamd: --interval must be a time in seconds, at least 0.001, not '0'",
                b"see twistd streamd --help",
            ],
        )

    @defer.inlineCallbacks
    def test_clientConnectionRefused(self):  # type: ignore[no-untyped-def]
        """
        The client says in one line that it cannot connect, and exits 1.
        """
        port = takenPort(self, listen=False)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ("-m", "streamd.client", "--port", str(port)), env=ENV
        )
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn(b"streamd.client: cannot connect", err)

    @defer.inlineCallbacks
    def test_daemonize(self):  # type: ignore[no-untyped-def]
        """
        Without -n, twistd daemonizes with a pidfile and a logfile, and SIGTERM
        stops the daemon and removes the pidfile.
        """
        workdir = tempfile.mkdtemp()
        pidfile = os.path.join(workdir, "streamd.pid")
        logfile = os.path.join(workdir, "streamd.log")
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            twistd("--pidfile", pidfile, "--logfile", logfile, "streamd", "--port", "0"),
            env=ENV,
        )
        self.assertEqual(code, 0, err)
        pid = int(open(pidfile).read())
        yield daemonRunning(lambda: readFile(logfile))
        os.kill(pid, signal.SIGTERM)
        # twistd removes the pidfile just before it logs "Server Shut Down.".
        yield waitFor(lambda: not os.path.exists(pidfile) and "Server Shut Down." in readFile(logfile))
        self.assertFalse(os.path.exists(pidfile))
        log = open(logfile, "rb").read()
        self.assertIn(b"streamd listening on 127.0.0.1:", log)
        self.assertIn(b"Server Shut Down.", log)
