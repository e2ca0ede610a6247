"""
The client as real processes against a daemon on loopback: how
C{python -m streamd.client} ends when a signal stops it, and the Python
example of C{docs/client.rst} run as it is written.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from streamd.client import connect
from streamd.config import DaemonConfig, Listen
from streamd.framing import ASCII10
from streamd.seqframing import SEQ

from ..support import spawnPython, startDaemon
from ..test_tls import _PKIMixin
from .test_integration import TICK, Collector

LOOPBACK = "tcp:0:interface=127.0.0.1"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
CLIENT_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "client.rst")


def readmeExample() -> str:
    """
    The Python code block that follows the line of C{docs/client.rst}
    introducing the Python API.
    """
    with open(CLIENT_DOCS) as f:
        lines = f.read().split("\n")
    start = lines.index("From Python, the same protocol and factory are an API:")
    assert lines[start + 2] == ".. code-block:: python", lines[start + 2]
    block = []
    for line in lines[start + 3 :]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() + "\n"


class Spawned(ProcessProtocol):
    """
    A process whose output is kept: L{receiving} fires at its first output,
    L{ended} with how it ended (C{exitCode}, C{signal}).
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.receiving: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[Any] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if not self.receiving.called:
            self.receiving.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)


class _SpawnMixin:
    """
    A ticking daemon in this process, and Python processes that are killed
    if a test leaves them running.
    """

    timeout = 30
    addCleanup: Any

    def setUp(self) -> None:
        config = DaemonConfig(listens=(Listen(LOOPBACK),), interval=0.05, statsInterval=0)
        self.service, self.port = startDaemon(self, config)

    def spawn(self, *argv: str) -> Spawned:
        """
        Run C{python ARGV}.
        """
        return spawnPython(self, argv, Spawned())


class ClientSignalTests(_SpawnMixin, TestCase):
    """
    SIGTERM ends the command-line client as quietly as Ctrl-C does.
    """

    def client(self) -> Spawned:
        return self.spawn("-m", "streamd.client", "--port", str(self.port))

    @defer.inlineCallbacks
    def test_terminated(self):  # type: ignore[no-untyped-def]
        """
        SIGTERM ends a printing client with status 143 (128 + 15, as a shell
        reports it) and nothing on stderr: not the connection it closed, not
        a traceback.
        """
        client = self.client()
        yield client.receiving
        client.transport.signalProcess("TERM")
        status = yield client.ended
        self.assertEqual((status.exitCode, client.err), (143, b""))
        self.assertTrue(TICK.match(client.out.splitlines()[0]), client.out)

    @defer.inlineCallbacks
    def test_interruptedThenTerminated(self):  # type: ignore[no-untyped-def]
        """
        SIGTERM while Ctrl-C is already stopping the client (as a supervisor
        that sends both does) changes nothing: the status of the signal the
        client saw first, and no C{ReactorNotRunning} traceback.  Sent back
        to back, either may be seen first: the kernel can hand them to
        different threads of the client (the main one, and the reactor's
        pool thread that resolved the daemon's name), which a busy machine
        runs in either order.
        """
        client = self.client()
        yield client.receiving
        client.transport.signalProcess("INT")
        client.transport.signalProcess("TERM")
        status = yield client.ended
        self.assertIn(status.exitCode, (130, 143))
        self.assertEqual(client.err, b"")


class ReadmeExampleTests(_SpawnMixin, TestCase):
    """
    The Python API example of C{docs/client.rst} works as it is written, and
    ends cleanly.
    """

    @defer.inlineCallbacks
    def test_interrupted(self):  # type: ignore[no-untyped-def]
        """
        The example, pointed at this daemon, publishes C{hello} and prints
        what it receives; Ctrl-C (SIGINT) ends it with status 0 and nothing
        on stderr (it used to print "Unhandled error in Deferred").
        """
        code = readmeExample()
        self.assertEqual(code.count("port=7000"), 1, code)
        directory = tempfile.mkdtemp(prefix="streamd-readme-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "example.py")
        with open(path, "w") as f:
            f.write(code.replace("port=7000", f"port={self.port}"))
        heard = Collector(1)
        witness = yield connect(
            reactor, f"tcp:host=127.0.0.1:port={self.port}", lambda m: None if TICK.match(m) else heard(m)
        )
        example = self.spawn(path)
        self.assertEqual((yield heard.enough), [b"hello"])
        yield example.receiving
        example.transport.signalProcess("INT")
        status = yield example.ended
        self.assertEqual((status.exitCode, example.err), (0, b""))
        self.assertTrue(example.out.startswith(b"b'The time is "), example.out)
        witness.transport.loseConnection()
        yield witness.finished


class Silent(Protocol):
    """
    Says nothing and ignores what it hears; L{lost} fires when the
    connection is gone.
    """

    def __init__(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(None)


class WrongPortTests(_PKIMixin, TestCase):
    """
    A client pointed at the wrong kind of port (TLS or plain) gives up within
    --timeout instead of waiting forever, and says what the port may be.
    """

    timeout = 30

    def client(self, port: int, *argv: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
        """
        The client's output, error output and exit status.
        """
        command = ("-m", "streamd.client", "--port", str(port), *argv)
        return getProcessOutputAndValue(sys.executable, command, env=ENV)

    @defer.inlineCallbacks
    def assertClientFails(self, port: int, argv: tuple[str, ...], message: str):  # type: ignore[no-untyped-def]
        """
        The client at C{port} with options C{argv} prints nothing, says
        C{message} on stderr and exits 1.
        """
        out, err, code = yield self.client(port, *argv)
        self.assertEqual((out, err.decode(), code), (b"", message, 1))

    def daemon(self, listen: str) -> int:
        """
        A quiet daemon (no sources) on C{listen}; its port.
        """
        config = DaemonConfig(listens=(Listen(listen),), sources=(), statsInterval=0)
        return startDaemon(self, config)[1]

    @defer.inlineCallbacks
    def test_plainAtTLS(self):  # type: ignore[no-untyped-def]
        """
        A plain client at a TLS port, where the server waits for a handshake
        and the client for frames, gives up after --timeout and says that
        it may be a TLS port, a seq listener, or a quiet stream.
        """
        port = self.daemon(self.pki.listen())
        yield self.assertClientFails(port, ("--timeout", "0.5"), self.noData(port))

    def noData(self, port: int) -> str:
        """
        What an int32 client says when no data came.
        """
        return (
            f"streamd.client: no data from 127.0.0.1:{port} within 0.5 s: is it a TLS port (use --tls),"
            " a seq listener (use --framing seq), or a quiet stream (use --timeout 0 to wait forever)?\n"
        )

    @defer.inlineCallbacks
    def test_int32AtOtherFramings(self):  # type: ignore[no-untyped-def]
        """
        An int32 client at a seq listener, which waits for the client's
        HELLO, is told it may be one; at an ascii10 listener, whose header
        reads as a huge length, it is told to use that framing.
        """
        seq = startDaemon(self, DaemonConfig(listens=(Listen(LOOPBACK, SEQ),), sources=(), statsInterval=0))[1]
        yield self.assertClientFails(seq, ("--timeout", "0.5"), self.noData(seq))
        ascii10 = startDaemon(
            self, DaemonConfig(listens=(Listen(LOOPBACK, ASCII10),), interval=0.05, statsInterval=0)
        )[1]
        out, err, code = yield self.client(ascii10, "--count", "1")
        self.assertEqual((out, code), (b"", 1))
        self.assertTrue(err.decode().endswith("(is it an ascii10 listener? use --framing ascii10)\n"), err)

    @defer.inlineCallbacks
    def test_tlsAtPlain(self):  # type: ignore[no-untyped-def]
        """
        A TLS client at a plain streamd port, which drops the client for its
        ClientHello (not a frame), says that it may be a plain port instead
        of only "connection lost".
        """
        port = self.daemon(LOOPBACK)
        yield self.assertClientFails(
            port,
            ("--cafile", self.pki.path("ca.pem")),
            f"streamd.client: connection to 127.0.0.1:{port} lost during the TLS handshake:"
            " is it a plain (non-TLS) port?\n",
        )

    @defer.inlineCallbacks
    def test_tlsAtSilentPort(self):  # type: ignore[no-untyped-def]
        """
        A TLS client at a port that never answers its handshake gives up
        after --timeout and says that it may be a plain port.
        """
        accepted: list[Silent] = []

        def build() -> Silent:
            accepted.append(Silent())
            return accepted[-1]

        listening = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")

        def close() -> defer.Deferred[Any]:
            for protocol in accepted:
                protocol.transport.abortConnection()
            lost = [protocol.lost for protocol in accepted]
            return defer.gatherResults([defer.maybeDeferred(listening.stopListening), *lost])

        self.addCleanup(close)
        port = listening.getHost().port
        yield self.assertClientFails(
            port,
            ("--cafile", self.pki.path("ca.pem"), "--timeout", "0.5"),
            f"streamd.client: TLS handshake with 127.0.0.1:{port} did not complete within 0.5 s:"
            " is it a plain (non-TLS) port?\n",
        )
