"""
Tests for C{--http} and C{--http-public-metrics} on the command line.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from streamd.service import StreamdService
from streamd.tap import Options, makeService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class HTTPOptionTests(SynchronousTestCase):
    """
    C{--http ENDPOINT} adds a listener serving the site.
    """

    def test_repeatable(self) -> None:
        """
        Each C{--http} is one endpoint, with streamd's backlog.
        """
        options = parse("--http", "tcp:0:interface=127.0.0.1", "--http", "tcp:0")
        self.assertEqual(
            options["config"].http, ("tcp:0:interface=127.0.0.1:backlog=4096", "tcp:0:backlog=4096")
        )
        self.assertFalse(options["http-public-metrics"])

    def test_badEndpoint(self) -> None:
        """
        An endpoint Twisted cannot parse is a usage error naming it.
        """
        error = self.assertRaises(usage.UsageError, parse, "--http", "nonsense:1")
        self.assertIn("--http", str(error))

    def test_makeService(self) -> None:
        """
        The daemon gets one more listener per C{--http}, serving a
        C{twisted.web} site, not listening yet.
        """
        service = makeService(parse("--port", "0", "--http", "tcp:0", "--http-public-metrics"))
        assert isinstance(service, StreamdService)
        self.assertEqual(len(service.listeners), 2)
        self.assertIsInstance(service.listeners[1].factory, Site)
        self.assertTrue(service.config.httpPublicMetrics)
        self.assertIsNone(service.listeners[1].port)

    def test_origins(self) -> None:
        """
        C{--http-origin} is repeatable, takes C{*} or a web origin, and is
        a one-line usage error otherwise.
        """
        options = parse("--http-origin", "https://app.example", "--http-origin", "*")
        self.assertEqual(options["config"].server.httpOrigins, ("https://app.example", "*"))
        error = self.assertRaises(usage.UsageError, parse, "--http-origin", "app.example")
        self.assertIn("--http-origin must be * or a web origin such as https://example.com", str(error))

    def test_headerTimeout(self) -> None:
        """
        C{--http-header-timeout} sets each request head's time (5 s by
        default; 0 for none).
        """
        self.assertEqual(parse()["config"].httpHeaderTimeout, 5.0)
        self.assertEqual(parse("--http-header-timeout", "2.5")["config"].httpHeaderTimeout, 2.5)
        self.assertIsNone(parse("--http-header-timeout", "0")["config"].httpHeaderTimeout)

    def test_compress(self) -> None:
        """
        C{--http-compress BYTES} turns compression on for messages of at
        least that size, with one deflater for every C{--http} listener;
        it is off by default, and less than one byte is a usage error.
        """
        self.assertIsNone(parse()["config"].httpCompress)
        self.assertEqual(parse("--http-compress", "256")["config"].httpCompress, 256)
        error = self.assertRaises(usage.UsageError, parse, "--http-compress", "0")
        self.assertIn("--http-compress must be at least 1 byte", str(error))
        service = makeService(parse("--port", "0", "--http", "tcp:0", "--http", "tcp:0", "--http-compress", "1024"))
        assert isinstance(service, StreamdService)
        sockets = [listener.factory.resource.getStaticEntity(b"ws") for listener in service.listeners[1:]]
        first, second = (resource._factory.context.deflater for resource in sockets)
        self.assertIs(first, second)
        self.assertEqual(first.threshold, 1024)

    def test_drain(self) -> None:
        """
        C{--drain} sets the window of goodbyes at shutdown (none by
        default), and is a number of seconds.
        """
        self.assertEqual(parse()["config"].drain, 0.0)
        self.assertEqual(parse("--drain", "30")["config"].drain, 30.0)
        self.assertRaises(usage.UsageError, parse, "--drain", "soon")
