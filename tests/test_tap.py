"""
Tests for L{streamd.tap}: the command line of C{twistd streamd}.
"""

from __future__ import annotations

import io
import sys

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import Listen, Shortcuts
from streamd.framing import ASCII10, INT32
from streamd.service import StreamdService
from streamd.tap import Options, makeService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    """
    Options are parsed into a daemon's settings, and mistakes are refused
    with a clear message.
    """

    def test_defaults(self) -> None:
        """
        With no options, streamd listens on 127.0.0.1:7000 (with a listen
        backlog of 4096) with the int32 framing and runs the clock every second.
        """
        config = parse()["config"]
        self.assertEqual(config.listens, (Listen("tcp:7000:interface=127.0.0.1:backlog=4096", INT32),))
        self.assertEqual(config.sources, ("clock",))
        self.assertEqual(config.interval, 1.0)
        self.assertEqual(config.server.maxMessageSize, 1024 * 1024)
        self.assertEqual(config.shutdownTimeout, 5.0)
        self.assertEqual(config.server.maxPartialBytes, 256 * 1024 * 1024)
        self.assertEqual(config.shortcuts, Shortcuts())

    def test_maxPartialBytes(self) -> None:
        """
        --max-partial-bytes reaches the server's rules; left out, it grows to
        twice a --max-message-size that needs more than 256 MiB.
        """
        service = makeService(parse("--max-partial-bytes", "4194304"))
        assert isinstance(service, StreamdService)
        self.assertEqual(service.config.server.maxPartialBytes, 4194304)
        self.assertEqual(service.connections.partial.limit, 4194304)
        config = parse("--max-message-size", "200000000")["config"]
        self.assertEqual(config.server.maxPartialBytes, 400_000_000)

    def test_portAndInterface(self) -> None:
        """
        --port and --interface make a TCP endpoint; an IPv6 address is quoted.
        """
        options = parse("--port", "0", "--interface", "::1")
        self.assertEqual(options["config"].listens, (Listen("tcp:0:interface=\\:\\:1:backlog=4096", INT32),))

    def test_listenReplacesDefaultPort(self) -> None:
        """
        --listen entries replace the default port unless --port is also given,
        and each may choose its framing.
        """
        options = parse("--listen", "unix:/tmp/s.sock", "--listen", "tcp:7010:framing=ascii10")
        self.assertEqual(
            options["config"].listens,
            (Listen("unix:/tmp/s.sock", INT32), Listen("tcp:7010:backlog=4096", ASCII10)),
        )
        options = parse("--port", "7001", "--listen", "tcp:7010")
        self.assertEqual(
            [listen.endpoint for listen in options["config"].listens],
            ["tcp:7001:interface=127.0.0.1:backlog=4096", "tcp:7010:backlog=4096"],
        )

    def test_everyTCPListenerBacklog(self) -> None:
        """
        Every TCP listener, not only --port, listens with a backlog of 4096
        (Twisted's default of 50 overflows when many clients connect at once),
        unless its description names one.
        """
        reactor = MemoryReactorClock()
        options = parse("--listen", "tcp:7010:interface=127.0.0.1", "--listen", "tcp6:7011:interface=\\:\\:1",
                        "--listen", "tcp:7012:backlog=7", "--listen", "unix:/tmp/s.sock")  # fmt: skip
        for listen in options["config"].listens:
            serverFromString(reactor, listen.description).listen(Factory())
        self.assertEqual([server[2] for server in reactor.tcpServers], [4096, 4096, 7])

    def test_shortcuts(self) -> None:
        """
        Each shortcut through Twisted's internals has a flag of its own that
        turns it off, and only it.
        """
        for flag, shortcuts in (
            ("--no-fast-write", Shortcuts(fastWrite=False)),
            ("--no-big-reads", Shortcuts(bigReads=False)),
            ("--no-accept-first", Shortcuts(acceptFirst=False)),
        ):
            self.assertEqual(parse(flag)["config"].shortcuts, shortcuts)

    def test_sourceNone(self) -> None:
        """
        --source none runs no source: a pure hub.
        """
        self.assertEqual(parse("--source", "none")["config"].sources, ())

    def test_mistakes(self) -> None:
        """
        Each mistake gives a one-line message that names the problem.
        """
        cases = [
            (["--port", "seventy"], "--port must be a number from 0 to 65535, not 'seventy'"),
            (["--port", "70000"], "--port must be a number from 0 to 65535, not '70000'"),
            (["--interval", "0"], "--interval must be a time in seconds, at least 0.001, not '0'"),
            (["--interval", "-1"], "--interval must be a time in seconds, at least 0.001, not '-1'"),
            (["--interval", "1e-9"], "--interval must be a time in seconds, at least 0.001, not '1e-9'"),
            (["--max-pending", "lots"], "--max-pending must be a size in bytes, at least 0, not 'lots'"),
            (["--max-message-size", "0"], "--max-message-size must be a size in bytes, at least 1, not '0'"),
            (["--max-message-size", "-5"], "--max-message-size must be a size in bytes, at least 1, not '-5'"),
            (["--stall-timeout", "-1"], "--stall-timeout must be a time in seconds, greater than 0, not '-1'"),
            (["--max-streams", "-1"], "--max-streams must be a whole number, at least 1, not '-1'"),
            (["--drain", "1e308"], "--drain must be at most 3600 s (an hour), not 1e+308"),
            (["--listen", "nonsense:1"], "bad endpoint 'nonsense:1': unknown endpoint type 'nonsense'"),
            (["--listen", "tcp:abc"], "bad endpoint 'tcp:abc': 'abc' is not a number"),
            (
                ["--listen", "systemd:domain=INET:index=0"],
                "bad endpoint 'systemd:domain=INET:index=0': systemd passed no such socket",
            ),
            (["--listen", "tcp:7010:framing=base64"], "unknown framing 'base64'"),
            (["--source", "radio"], "unknown source 'radio'"),
            (["--source", "clock:fast"], "bad source 'clock:fast'"),
            (["--slow-consumer", "drop"], "--slow-consumer must be disconnect or block, not 'drop'"),
            (
                ["--soft-pending", "10", "--max-pending", "5"],
                "--soft-pending must not be larger than --max-pending",
            ),
            (
                ["--max-partial-bytes", "1000000"],
                "--max-partial-bytes must be at least twice --max-message-size (2097152)",
            ),
            (["--frobnicate"], "option --frobnicate not recognized"),
        ]
        for argv, message in cases:
            with self.subTest(argv=argv):
                error = self.assertRaises(UsageError, parse, *argv)
                self.assertIn(message, str(error))
                self.assertNotIn("\n", str(error))
                self.assertNotIn("Parameter type enforcement", str(error))
                self.assertNotIn("backlog=", str(error))

    def test_mistakeUnderTwistdIsOneLine(self) -> None:
        """
        Under twistd, a mistake prints one line naming it (without Twisted's
        "Parameter type enforcement failed") and a pointer to C{--help} on
        stderr, not twistd's 50-odd lines of usage, and exits 2.
        """
        from twisted.scripts.twistd import ServerOptions

        for argv, message in [
            (["--port", "abc"], "--port must be a number from 0 to 65535, not 'abc'"),
            (["--frobnicate"], "option --frobnicate not recognized"),
        ]:
            with self.subTest(argv=argv):
                stderr = io.StringIO()
                self.patch(sys, "stderr", stderr)
                error = self.assertRaises(SystemExit, ServerOptions().parseOptions, ["streamd", *argv])
                self.assertEqual(error.code, 2)
                self.assertEqual(
                    stderr.getvalue(), f"twistd streamd: {message}\nsee twistd streamd --help\n"
                )

    def test_makeService(self) -> None:
        """
        makeService builds the daemon the options describe, without listening
        yet.
        """
        service = makeService(
            parse("--port", "0", "--slow-consumer", "block", "--max-pending", "100", "--soft-pending", "50")
        )
        assert isinstance(service, StreamdService)
        self.assertTrue(service.hub.blockPublishers)
        self.assertEqual(service.config.flow.maxBehind, 100)
        self.assertEqual(service.config.flow.softBehind, 50)
        self.assertEqual(len(service.listeners), 1)
        self.assertIsNone(service.listeners[0].port)


class PluginTests(SynchronousTestCase):
    """
    twistd finds the plugin.
    """

    def test_discovered(self) -> None:
        """
        The streamd service maker is among twistd's plugins and points at
        L{streamd.tap}.
        """
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("streamd", makers)
        self.assertIs(makers["streamd"].options, Options)
