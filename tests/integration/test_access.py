"""
The access file under a real C{twistd -n streamd}: a C{seq} client of
several streams refused one and served another, a listener bound to a
stream refusing a token that may not read it, and SIGHUP taking a
publisher's right away.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from streamd.client.seq import SeqClient, connect
from streamd.framing import INT32

from ..support import TwistdProcess, spawnTwistd, waitFor

RULES = b"""\
# Written by tests/integration/test_access.py
reader-5e1f read=prices,news
writer-0b7d read=prices publish=prices
news-only-2c4a read=news
"""
_LISTENING = re.compile(rb"streamd listening on 127\.0\.0\.1:(\d+)( \(seq framing\))?")


class Frames(Protocol):
    """
    An C{int32} client: sends its token first, keeps what it receives, and
    fires C{lost} when the connection ends.
    """

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.received = b""
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(INT32.encode(self.token))  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.lost.callback(None)


class Streams:
    """
    What a C{seq} client of several streams was sent and refused, with a
    Deferred for the next of each.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.refusals: list[tuple[str, str]] = []
        self._next: dict[str, Deferred[Any]] = {}

    def next(self, kind: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._next[kind] = d
        return d

    def _tell(self, kind: str, value: Any) -> None:
        d = self._next.pop(kind, None)
        if d is not None:
            d.callback(value)

    def message(self, name: str, seq: int, payload: bytes) -> None:
        self.messages.append((name, payload))
        self._tell("message", (name, payload))

    def refused(self, subject: str, text: str) -> None:
        self.refusals.append((subject, text))
        self._tell("refusal", (subject, text))


class AccessFileTests(TestCase):
    """
    A daemon with an access file, a C{seq} listener and an C{int32}
    listener bound to the stream C{prices}.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        descriptor, self.path = tempfile.mkstemp(prefix="streamd-access-")
        self.addCleanup(os.remove, self.path)
        with os.fdopen(descriptor, "wb") as f:
            f.write(RULES)
        self.daemon: TwistdProcess = spawnTwistd(
            self,
            "--listen", "tcp:0:interface=127.0.0.1:framing=seq",
            "--listen", "tcp:0:interface=127.0.0.1:stream=prices",
            "--source", "none",
            "--access-file", self.path,
        )  # fmt: skip
        yield self.daemon.listening
        yield waitFor(lambda: len(_LISTENING.findall(self.daemon.output)) == 2, details=self.output)
        ports = {bool(seq): int(port) for port, seq in _LISTENING.findall(self.daemon.output)}
        self.seqPort, self.pricesPort = ports[True], ports[False]

    def output(self) -> str:
        return self.daemon.output.decode(errors="replace")

    def client(
        self, token: bytes, streams: tuple[str, ...] = (), publishTo: str | None = None
    ) -> tuple[SeqClient, Streams]:
        """
        A C{seq} client of version 4 of the daemon, stopped when the test
        ends.
        """
        seen = Streams()
        client = connect(
            reactor,
            f"tcp:127.0.0.1:port={self.seqPort}",
            seen.message,
            resume=False,
            token=token,
            streams=streams or ("nothing.here",),
            onRefused=seen.refused,
            publishTo=publishTo,
            timeout=10,
        )
        self.addCleanup(client.stop)
        return client, seen

    def framed(self, token: bytes) -> Deferred[Frames]:
        """
        An C{int32} client of the listener bound to C{prices}.
        """
        protocol = Frames(token)
        self.addCleanup(lambda: protocol.transport is None or protocol.transport.loseConnection())
        return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.pricesPort), protocol)  # type: ignore[return-value]

    @inlineCallbacks
    def test_seqStreams(self) -> Any:
        """
        A client of several streams is refused the one its token may not
        read (a REFUSED, the connection goes on) and served the other.
        """
        client, seen = self.client(b"reader-5e1f", ("secrets", "prices"))
        refusal = yield seen.next("refusal")
        self.assertEqual(refusal, ("secrets", "this client may not read 'secrets'"))
        writer, _ = self.client(b"writer-0b7d", publishTo="prices")
        connection = yield writer.whenConnected()
        arrived = seen.next("message")
        connection.sendString(b"bund 101.2")
        message = yield arrived
        self.assertEqual(message, ("prices", b"bund 101.2"))
        self.assertEqual(seen.refusals, [refusal])

    @inlineCallbacks
    def test_boundListener(self) -> Any:
        """
        The listener bound to C{prices} closes a connection whose token may
        not read it, having sent it nothing (logged as such), and serves
        one whose token may.
        """
        refused = yield self.framed(b"news-only-2c4a")
        yield refused.lost
        self.assertEqual(refused.received, b"")
        yield self.daemon.logged(b"may not read the stream prices; refused")
        reader = yield self.framed(b"reader-5e1f")
        writer = yield self.framed(b"writer-0b7d")
        yield self.daemon.logged(b"authenticated (read)")
        yield self.daemon.logged(b"authenticated (publish)")
        writer.transport.write(INT32.encode(b"bund 101.2"))  # type: ignore[union-attr]
        yield waitFor(lambda: reader.received == INT32.encode(b"bund 101.2"), details=self.output)
        self.assertNotIn(b"news-only-2c4a", self.daemon.output)

    @inlineCallbacks
    def test_reload(self) -> Any:
        """
        SIGHUP re-reads the file: a publisher whose token lost the right to
        publish to C{prices} (and may publish elsewhere) is refused there
        from then on, its connection going on; a token the new file adds
        publishes there.
        """
        _, seen = self.client(b"reader-5e1f", ("prices", "secrets"))
        yield seen.next("refusal")
        writer, writerSeen = self.client(b"writer-0b7d", ("news",), publishTo="prices")
        yield writerSeen.next("refusal")
        connection = yield writer.whenConnected()
        connection.sendString(b"before")
        yield connection.flushed()
        with open(self.path, "wb") as f:
            f.write(RULES.replace(b"publish=prices", b"publish=other") + b"writer-two-9a1d publish=prices\n")
        self.daemon.transport.signalProcess("HUP")  # type: ignore[union-attr]
        yield self.daemon.logged(f"reloaded token file(s): {self.path}".encode())
        refusal = writerSeen.next("refusal")
        connection.sendString(b"after")
        self.assertEqual((yield refusal), ("prices", "this client may not publish to 'prices'"))
        second, _ = self.client(b"writer-two-9a1d", publishTo="prices")
        secondConnection = yield second.whenConnected()
        secondConnection.sendString(b"from the new token")
        yield waitFor(lambda: len(seen.messages) == 2, details=self.output)
        self.assertEqual(seen.messages, [("prices", b"before"), ("prices", b"from the new token")])
        self.assertNotIn(b"writer-0b7d", self.daemon.output)
