"""
The ascii10 framing on real sockets: clients written for the sockets
exercise against a real daemon, and the streamd client against a plain
blocking server.
"""

from __future__ import annotations

import ast
import socket
import sys

from twisted.internet import defer, threads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from streamd.config import DaemonConfig, Listen
from streamd.framing import ASCII10
from streamd.service import StreamdService

from ..support import ENV, startDaemon, waitFor
from ..test_ascii10 import MESSAGES

EXERCISE_CLIENT = """\
import socket, sys

HEADERSIZE = 10
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buffered = b""


def fill(size):
    global buffered
    while len(buffered) < size:
        chunk = s.recv(16)
        if not chunk:
            sys.exit("server closed the connection")
        buffered += chunk


for _ in range(int(sys.argv[2])):
    fill(HEADERSIZE)
    msglen = int(buffered[:HEADERSIZE])
    fill(HEADERSIZE + msglen)
    print(repr(buffered[HEADERSIZE : HEADERSIZE + msglen]), flush=True)
    buffered = buffered[HEADERSIZE + msglen :]
s.close()
"""


class ExerciseClientTests(TestCase):
    """
    A client written for the exercise's framing reads a real daemon's
    ascii10 listener.
    """

    timeout = 15

    def startDaemon(self, **settings: object) -> tuple[StreamdService, int]:
        listens = (Listen("tcp:0:interface=127.0.0.1", ASCII10),)
        return startDaemon(self, DaemonConfig(listens=listens, statsInterval=0, **settings))  # type: ignore[arg-type]

    def runClient(self, port: int, count: int) -> defer.Deferred[tuple[bytes, bytes, int]]:
        return getProcessOutputAndValue(
            sys.executable, ("-c", EXERCISE_CLIENT, str(port), str(count)), env=ENV
        )

    @defer.inlineCallbacks
    def test_ticks(self):  # type: ignore[no-untyped-def]
        """
        The exercise's client prints streamd's clock ticks unchanged.
        """
        service, port = self.startDaemon(interval=0.05)
        out, err, code = yield self.runClient(port, 3)
        self.assertEqual((code, err), (0, b""))
        ticks = [ast.literal_eval(line) for line in out.decode().splitlines()]
        self.assertEqual(len(ticks), 3)
        for tick in ticks:
            self.assertRegex(tick, rb"^The time is \d+\.\d+(e-\d+)?$")
        yield service.stopService()

    @defer.inlineCallbacks
    def test_anyMessages(self):  # type: ignore[no-untyped-def]
        """
        Empty, binary, non-ASCII and large messages, many per read, reach the
        exercise's client byte for byte.
        """
        service, port = self.startDaemon(sources=())
        client = self.runClient(port, len(MESSAGES) * 3 + 1)
        yield waitFor(lambda: len(service.connections) == 1)
        big = bytes(range(256)) * 400
        service.hub.publish(MESSAGES * 3 + [big])
        out, err, code = yield client
        self.assertEqual((code, err), (0, b""))
        received = [ast.literal_eval(line) for line in out.decode().splitlines()]
        self.assertEqual(received, MESSAGES * 3 + [big])
        yield service.stopService()


def serveAndClose(listener: socket.socket, messages: list[bytes]) -> None:
    """
    A plain blocking server: accept one client, send it C{messages} in the
    ascii10 framing, close.
    """
    try:
        connection, _ = listener.accept()
        with connection:
            for message in messages:
                connection.sendall(f"{len(message):<10}".encode() + message)
    finally:
        listener.close()


class StreamdClientTests(TestCase):
    """
    C{python -m streamd.client --framing ascii10} against a server that is
    not streamd.
    """

    timeout = 15

    @defer.inlineCallbacks
    def test_blockingServerThatCloses(self):  # type: ignore[no-untyped-def]
        """
        The client prints every message of a blocking server that sends a
        fixed number of them and closes, then exits 0.
        """
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        messages = [f"The time is 0.{i}".encode() for i in range(20)] + ["caf\u00e9".encode(), b""]
        served = threads.deferToThread(serveAndClose, listener, messages)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            ("-m", "streamd.client", "--framing", "ascii10", "--port", str(port)),
            env=ENV,
        )
        yield served
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(out.decode("utf-8").split("\n"), [m.decode() for m in messages] + [""])
