"""
Tests for C{/metrics} over many streams (L{streamd.web.metrics}): the
daemon's figures cover every stream, and only a bounded set of streams
has series of its own, picked when scraped, among those the scraper may
read.
"""

from __future__ import annotations

import os
import tempfile

from prometheus_client.parser import text_string_to_metric_families
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from streamd.access import AccessFile
from streamd.auth import OPEN, AccessPolicy
from streamd.config import ServerConfig, StreamMetrics
from streamd.tap import Options
from streamd.web.context import WebContext
from streamd.web.metrics import MetricsResource

from .sessionclients import BoundClient, Daemon

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PER_STREAM = ("streamd_stream_subscribers", "streamd_stream_messages_total", "streamd_stream_history_bytes")


class MetricsTests(SynchronousTestCase):
    """
    C{/metrics} of a daemon of many streams.
    """

    def daemon(self, metrics: StreamMetrics | None = None, access: AccessPolicy = OPEN) -> Daemon:
        return Daemon(ServerConfig(heartbeat=None, metrics=metrics or StreamMetrics(), access=access))

    def scrape(
        self, daemon: Daemon, token: bytes | None = None, public: bool = True, streams: bool = True
    ) -> Samples:
        """
        The samples of one C{GET /metrics}, as C{prometheus_client} parses
        them.
        """
        context = WebContext(
            daemon.hub, daemon.clock, daemon.config, daemon.connections, publicMetrics=public
        )
        if streams:
            context.streams = daemon.streams
        request = DummyRequest([b"metrics"])
        if token is not None:
            request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + token])
        body = MetricsResource(context).render_GET(request)
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }

    def shown(self, samples: Samples, name: str = "streamd_stream_messages_total") -> dict[str, float]:
        """
        The streams with a series of C{name}, and its value.
        """
        return {dict(labels)["stream"]: value for (found, labels), value in samples.items() if found == name}

    def test_bounded(self) -> None:
        """
        Of 2,000 streams, the ten that published the most have series of
        their own (the first names first among equals), and no other; the
        unlabelled figures count them all.
        """
        daemon = self.daemon()
        for n in range(2000):
            daemon.streams.open(f"s.{n:04d}").publish([b"m"] * (n % 7))
        samples = self.scrape(daemon)
        self.assertEqual(samples[("streamd_streams", ())], 2001)
        busiest = {f"s.{n:04d}": 6.0 for n in (6, 13, 20, 27, 34, 41, 48, 55, 62, 69)}
        for name in PER_STREAM:
            self.assertEqual(len(self.shown(samples, name)), 10, name)
        self.assertEqual(self.shown(samples), busiest)
        self.assertEqual(len([key for key in samples if "stream" in dict(key[1])]), 30)
        held = sum(each.history.size for each in daemon.streams)
        self.assertEqual(samples[("streamd_history_bytes", ())], held)

    def test_figures(self) -> None:
        """
        A stream's series: its subscribers, its messages (its newest
        number) and the bytes its history holds (each message framed, as
        it was published: 4 bytes more).
        """
        daemon = self.daemon()
        BoundClient(daemon, "prices.eu")
        BoundClient(daemon, "prices.eu")
        daemon.streams.open("prices.eu").publish([b"12345", b"678"])
        samples = self.scrape(daemon)
        label = (("stream", "prices.eu"),)
        self.assertEqual(
            [samples[(name, label)] for name in PER_STREAM],
            [2, 2, 16],
        )
        self.assertEqual(samples[("streamd_subscribers", (("state", "live"),))], 2)
        self.assertEqual(samples[("streamd_history_bytes", ())], 16)

    def test_none(self) -> None:
        """
        C{--metrics-streams 0}: no stream has series of its own, but those
        C{--metrics-stream} names, even idle, if they exist.
        """
        daemon = self.daemon(StreamMetrics(0, ("quiet", "missing")))
        daemon.streams.open("busy").publish([b"x"] * 5)
        daemon.streams.open("quiet")
        samples = self.scrape(daemon)
        self.assertEqual(self.shown(samples), {"quiet": 0})
        self.assertEqual(samples[("streamd_streams", ())], 3)

    def test_named(self) -> None:
        """
        Streams named by C{--metrics-stream} have series besides the
        busiest, once each.
        """
        daemon = self.daemon(StreamMetrics(1, ("quiet", "busy")))
        daemon.streams.open("busy").publish([b"x"] * 5)
        daemon.streams.open("quiet")
        self.assertEqual(self.shown(self.scrape(daemon)), {"busy": 5, "quiet": 0})

    def test_scraperRights(self) -> None:
        """
        With an access file, a scraper's token is shown the series of the
        streams it may read only; with C{--http-public-metrics}, every
        scraper all of them.
        """
        descriptor, path = tempfile.mkstemp(prefix="streamd-access-")
        self.addCleanup(os.remove, path)
        with os.fdopen(descriptor, "wb") as f:
            f.write(b"scraper-1 read=prices.>\n")
        daemon = self.daemon(access=AccessPolicy(accessFile=AccessFile(path)))
        for name in ("prices.eu", "prices.us", "secrets.x"):
            daemon.streams.open(name).publish([b"x"])
        self.assertEqual(
            set(self.shown(self.scrape(daemon, b"scraper-1", public=False))), {"prices.eu", "prices.us"}
        )
        self.assertEqual(
            set(self.shown(self.scrape(daemon))), {"prices.eu", "prices.us", "secrets.x", "default"}
        )

    def test_oneStream(self) -> None:
        """
        A context that knows no streams (a listener's own) shows its
        stream alone.
        """
        daemon = self.daemon()
        daemon.streams.open("other").publish([b"x"])
        daemon.publish(b"y", b"z")
        samples = self.scrape(daemon, streams=False)
        self.assertEqual(samples[("streamd_streams", ())], 1)
        self.assertEqual(self.shown(samples), {"default": 2})


class OptionsTests(SynchronousTestCase):
    """
    C{--metrics-streams} and C{--metrics-stream} on the command line.
    """

    def test_defaults(self) -> None:
        """
        Ten streams by default; C{--metrics-streams 0} none but those
        C{--metrics-stream} names.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["config"].server.metrics, StreamMetrics(10, ()))
        options = Options()
        options.parseOptions(
            ["--metrics-streams", "0", "--metrics-stream", "prices", "--metrics-stream", "news.eu"]
        )
        self.assertEqual(options["config"].server.metrics, StreamMetrics(0, ("prices", "news.eu")))

    def test_mistakes(self) -> None:
        """
        A count that is not one, or a stream that is not a name (a pattern
        would be no bound), is one usage line.
        """
        cases = [
            (["--metrics-streams", "-1"], "--metrics-streams must be a whole number, at least 0"),
            (["--metrics-stream", "a..b"], "--metrics-stream: 'a..b' is not a stream name"),
            (["--metrics-stream", "prices.*"], "--metrics-stream: 'prices.*' is not a stream name"),
        ]
        for argv, message in cases:
            error = self.assertRaises(UsageError, Options().parseOptions, argv)
            self.assertIn(message, str(error))
