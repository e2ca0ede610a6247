"""
Tests for L{streamd.client}: the Python API and the pieces of the command-line
client.
"""

from __future__ import annotations

import io
import struct
import sys
from importlib.metadata import version

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from streamd.client import StreamClientFactory, StreamClientProtocol
from streamd.client.__main__ import REFUSED_WITHIN, ClientOptions, Fail, Printer, _framingHint, _settle, run
from streamd.framing import ASCII10, INT32, FrameTooLong
from streamd.printable import preview, printable

from .support import InMemoryDaemon, onStringTransport


class PrintableTests(SynchronousTestCase):
    """
    One message is always shown as one line.
    """

    def test_plainText(self) -> None:
        """
        Valid UTF-8 without line breaks is shown as it is.
        """
        self.assertEqual(
            printable("The time is 0.1 \u2014 caf\u00e9 \\x".encode()), "The time is 0.1 \u2014 caf\u00e9 \\x"
        )

    def test_escaped(self) -> None:
        """
        Line breaks and bytes that are not UTF-8 are escaped, and backslashes
        are doubled so that the escaped form is unambiguous.
        """
        self.assertEqual(printable(b"a\nb\r\\n\xff"), "a\\nb\\r\\\\n\\xff")

    def test_controlCharacters(self) -> None:
        """
        Terminal escapes, other control characters and Unicode line
        separators are escaped too: a message cannot colour, move or split
        the line it is shown on.
        """
        self.assertEqual(printable(b"\x1b[31mred\x0b\x0c"), "\\x1b[31mred\\x0b\\x0c")
        self.assertEqual(printable("a\u2028b\u0085c".encode()), "a\\u2028b\\x85c")
        self.assertEqual(len(printable(bytes(range(256))).splitlines()), 1)

    def test_preview(self) -> None:
        """
        A preview is cut to 80 characters, marked with an ellipsis.
        """
        self.assertEqual(preview(b"short"), "short")
        self.assertEqual(preview(b"y" * 200), "y" * 79 + "\u2026")
        self.assertEqual(len(preview(b"\xff" * 1000)), 80)


class PrinterTests(SynchronousTestCase):
    """
    The command-line client's output.
    """

    def test_countStops(self) -> None:
        """
        With a count, exactly that many messages are printed, one per line,
        and the printer says it has had enough.
        """
        out = io.StringIO()
        printer = Printer(out, 2)
        for message in [b"one", b"two\nlines", b"three"]:
            printer(message)
        self.assertEqual(out.getvalue(), "one\ntwo\\nlines\n")
        self.assertTrue(printer.enough.called)

    def test_options(self) -> None:
        """
        --send is repeatable; a bad port or count is refused.
        """
        options = ClientOptions()
        options.parseOptions(["--send", "a", "--send", "b", "--count", "0"])
        self.assertEqual((options["send"], options["count"]), (["a", "b"], 0))
        for argv in (["--port", "x"], ["--count", "-1"], ["--framing", "morse"]):
            self.assertRaises(UsageError, ClientOptions().parseOptions, argv)

    def test_seqOptions(self) -> None:
        """
        A bad --last names --last; --stdin with --resume (acknowledged,
        exactly once) is taken; a bad --since, or --since with --last, is
        refused; --send with a pattern (no one stream to publish to) is
        refused.
        """
        error = self.assertRaises(
            UsageError, ClientOptions().parseOptions, ["--framing", "seq", "--last", "x"]
        )
        self.assertIn("--last must be a whole number, at least 0, not 'x'", str(error))
        ClientOptions().parseOptions(["--framing", "seq", "--stdin", "--resume", "--since", "10m"])
        error = self.assertRaises(
            UsageError, ClientOptions().parseOptions, ["--framing", "seq", "--since", "yesterday"]
        )
        self.assertIn("--since: 'yesterday' is neither a duration", str(error))
        error = self.assertRaises(
            UsageError, ClientOptions().parseOptions, ["--framing", "seq", "--since", "1h", "--last", "3"]
        )
        self.assertIn("--since and --last", str(error))
        error = self.assertRaises(
            UsageError, ClientOptions().parseOptions, ["--framing", "seq", "--stream", "a.*", "--send", "x"]
        )
        self.assertIn("--send and --stdin publish to one stream", str(error))
        error = self.assertRaises(UsageError, ClientOptions().parseOptions, ["--stream", "prices"])
        self.assertIn("--stream need --framing seq", str(error))


class ErrorMessageTests(SynchronousTestCase):
    """
    Each mistake the client reports is one line in the user's words, without
    Python's or Twisted's internals.
    """

    def runClient(self, *argv: str) -> tuple[str, int]:
        """
        Run the client with C{argv} on a memory reactor; return what it
        wrote to stderr and its exit status.
        """
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        outcome = run(MemoryReactorClock(), list(argv), io.StringIO())
        settled: Deferred[None] = Deferred()
        _settle(settled, self.failureResultOf(outcome, Fail))
        return stderr.getvalue(), self.failureResultOf(settled, SystemExit).value.code

    def test_usageMistakes(self) -> None:
        """
        A value of the wrong form names the option and what it takes, with
        no "Parameter type enforcement failed", and exits 2.
        """
        for argv, line in (
            (["--port", "abc"], "--port must be a number from 1 to 65535, not 'abc' (see --help)"),
            (["--count", "x"], "--count must be a whole number, at least 0, not 'x' (see --help)"),
            (["--framing", "morse"], "--framing must be int32 or ascii10 or seq, not 'morse' (see --help)"),
        ):
            self.assertEqual(self.runClient(*argv), (f"streamd.client: {line}\n", 2))

    def test_badEndpoints(self) -> None:
        """
        An endpoint Twisted refuses is named with the reason in words: a
        missing parameter, a file that is not there.
        """
        for description, reason in (
            ("tcp:host=example.org", "no port given"),
            ("tls:host=h:port=1:trustRoots=/nonexistent", "/nonexistent: No such file or directory"),
        ):
            self.assertEqual(
                self.runClient("--connect", description),
                (f"streamd.client: bad endpoint {description!r}: {reason}\n", 1),
            )

    def test_tokenRefused(self) -> None:
        """
        A connection the server drops after the client's token and before
        any byte of the stream is said to be about the token; one dropped
        after a byte, or seconds later (an idle or a publishing client's),
        is a lost connection.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("wrong-token")
        connections: list[StreamClientProtocol] = []

        class Endpoint:
            def connect(self, factory: StreamClientFactory) -> Deferred[StreamClientProtocol]:
                protocol, _ = onStringTransport(factory.buildProtocol(None))
                connections.append(protocol)
                return succeed(protocol)

        self.patch(ClientOptions, "endpoint", lambda options, reactor: Endpoint())
        lost = "connection lost: Connection to the other side was lost in a non-clean fashion."
        for heard, later, line in (
            (
                b"",
                0,
                "127.0.0.1:7000 closed the connection right after this client's token, before any message:"
                " is the token wrong (--token-file, $STREAMD_TOKEN), not allowed what was asked, or the"
                " daemon full (--max-clients)? See the daemon's log.",
            ),
            (INT32.encode(b"x"), 0, lost),
            (b"", REFUSED_WITHIN, lost),
        ):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            reactor = MemoryReactorClock()
            outcome = run(reactor, ["--token-file", path], io.StringIO())
            if heard:
                connections[-1].dataReceived(heard)
            reactor.advance(later)
            connections[-1].connectionLost(Failure(ConnectionLost()))
            settled: Deferred[None] = Deferred()
            _settle(settled, self.failureResultOf(outcome, Fail))
            self.assertEqual(self.failureResultOf(settled, SystemExit).value.code, 1)
            self.assertEqual(stderr.getvalue(), f"streamd.client: {line}\n")

    def test_version(self) -> None:
        """
        C{--version} prints streamd's version, not Twisted's.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, ClientOptions().parseOptions, ["--version"])
        self.assertEqual((error.code, out.getvalue()), (0, f"streamd {version('streamd')}\n"))

    def test_ascii10Hint(self) -> None:
        """
        An int32 client whose server announces a frame whose header reads
        as digits is told that it may be an ascii10 listener; a frame too
        long for another reason gets no such hint.
        """
        options = ClientOptions()
        options.parseOptions([])
        header = struct.unpack(">I", ASCII10.encode(b"x" * 23)[:4])[0]
        self.assertEqual(
            _framingHint(FrameTooLong(header, 1 << 20), options),
            " (is it an ascii10 listener? use --framing ascii10)",
        )
        self.assertEqual(_framingHint(FrameTooLong(0xFFFFFF00, 1 << 20), options), "")


class ClientProtocolTests(SynchronousTestCase):
    """
    The client protocol against the real server protocol, in memory.
    """

    def connect(self, received: list[bytes], maxMessageSize: int = 1 << 20):  # type: ignore[no-untyped-def]
        daemon = InMemoryDaemon()
        factory = StreamClientFactory(received.append, maxMessageSize)
        client, server, pump = connectedServerAndClient(
            lambda: daemon.factory.buildProtocol(None),
            lambda: factory.buildProtocol(None),
            clock=Clock(),
        )
        return daemon, client, server, pump

    def test_receiveAndSend(self) -> None:
        """
        A client gets every message the daemon publishes, and what it sends
        reaches the other clients.
        """
        received: list[bytes] = []
        other: list[bytes] = []
        daemon, client, _, pump = self.connect(received)
        factory = StreamClientFactory(other.append)
        otherClient, _, otherPump = connectedServerAndClient(
            lambda: daemon.factory.buildProtocol(None), lambda: factory.buildProtocol(None)
        )
        daemon.hub.publish([b"tick"])
        client.sendString(b"from client")
        pump.flush()
        otherPump.flush()
        self.assertEqual(received, [b"tick"])
        self.assertEqual(other, [b"tick", b"from client"])

    def test_cleanCloseFinishes(self) -> None:
        """
        L{StreamClientProtocol.finished} fires when the server closes the
        connection.
        """
        daemon, client, server, pump = self.connect([])
        server.session.close()
        pump.flush()
        self.assertIsNone(self.successResultOf(client.finished))

    def test_oversizedFromServer(self) -> None:
        """
        A frame over the client's limit drops the connection and is reported
        as the reason.
        """
        received: list[bytes] = []
        daemon, client, _, pump = self.connect(received, maxMessageSize=10)
        daemon.hub.publish([b"small", b"far too large for the client"])
        pump.flush()
        self.assertEqual(received, [b"small"])
        self.failureResultOf(client.finished)
        self.assertIsInstance(client.frameError, FrameTooLong)

    def test_isInt32StringReceiver(self) -> None:
        """
        The client protocol is an L{Int32StringReceiver}, so code written for
        one works with it.
        """
        from twisted.protocols.basic import Int32StringReceiver

        self.assertTrue(issubclass(StreamClientProtocol, Int32StringReceiver))
        self.assertEqual(INT32.encode(b"x"), b"\x00\x00\x00\x01x")
