"""
A real daemon whose open-file limit is below what C{--max-clients} needs:
it serves what the limit leaves room for, refuses the others with a reason,
and its listeners and sources keep working (#22, slowloris).
"""

from __future__ import annotations

import shlex
import socket
import struct
import sys
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from streamd.listen.descriptors import RESERVE

from ..support import ENV, TwistdProcess, twistd, waitFor

LIMIT = 200


class DescriptorLimitTests(TestCase):
    """
    C{ulimit -n 200} under C{--max-clients 1000}.
    """

    timeout = 60

    def spawn(self, *argv: str) -> TwistdProcess:
        """
        Start the daemon with both descriptor limits at L{LIMIT}.
        """
        process = TwistdProcess()
        command = shlex.join((sys.executable, *twistd("-n", "--pidfile=", "streamd", *argv)))
        transport = reactor.spawnProcess(process, "/bin/sh", ("sh", "-c", f"ulimit -n {LIMIT} && exec {command}"), env=ENV)

        def kill() -> Any:
            if not process.ended.called:
                transport.signalProcess("KILL")
            return process.ended

        self.addCleanup(kill)
        return process

    @inlineCallbacks
    def test_refusedWithReasonListenersLive(self) -> Any:
        """
        The daemon says at start how many clients it will serve; of 150
        clients it keeps 100 and refuses the rest with a line and a BYE;
        once some leave, a new client is served again, and the exec: source
        keeps running new processes throughout.
        """
        served = LIMIT - RESERVE
        daemon = self.spawn(
            "--listen", "tcp:0:interface=127.0.0.1:framing=seq", "--max-clients", "1000",
            "--source", "exec:/bin/echo tick", "--restart-delay", "0.05",
        )  # fmt: skip
        port = yield daemon.listening
        yield daemon.logged(f"serving at most {served} clients".encode())
        clients = yield deferToThread(_connectMany, port, 150)
        self.addCleanup(lambda: [client.close() for client in clients])
        yield daemon.logged(f"refused: {served} clients connected, the limit of {served}".encode())
        byes = yield deferToThread(_byes, clients)
        self.assertEqual(byes, 150 - served)
        for client in clients[:20]:
            client.close()
        del clients[:20]
        hello = yield deferToThread(_servedAgain, port)
        self.assertEqual(hello[0], 1)
        runs = daemon.output.count(b"exec:/bin/echo tick")
        yield waitFor(lambda: daemon.output.count(b"exec:/bin/echo tick") > runs + 5)


def _connectMany(port: int, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        hello = struct.pack(">BBB8sQ", 1, 3, 0, bytes(8), 0)
        client.sendall(struct.pack(">I", len(hello)) + hello)
        clients.append(client)
    return clients


def _servedAgain(port: int) -> bytes:
    """
    The first frame of a new client, once the daemon has seen others leave
    and serves one again (it refuses one with a BYE until then).
    """
    deadline = time.monotonic() + 10
    while True:
        (client,) = _connectMany(port, 1)
        with client:
            frame = _frame(client)
        if frame[0] != 5 or time.monotonic() > deadline:
            return frame
        time.sleep(0.05)


def _frame(client: socket.socket) -> bytes:
    """
    The payload of the next frame the daemon sends C{client}.
    """
    header = _exactly(client, 4)
    return _exactly(client, struct.unpack(">I", header)[0])


def _exactly(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _byes(clients: list[socket.socket]) -> int:
    """
    How many of C{clients} were sent BYE MAX_CLIENTS as their first frame.
    """
    count = 0
    for client in clients:
        frame = _frame(client)
        if frame[0] == 5 and struct.unpack(">H", frame[1:3])[0] == 10:
            count += 1
    return count
