"""
Tests for the scenarios of named streams: the version 4 client's reading of
what streamd's own encoders make, however it is split into reads; the
frames it sends, as the daemon decodes them; their options, plans and
tables; and the baseline's bookkeeping.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from bench import runner
from bench.named import Publications, StreamReader, subscriptions
from bench.options import BenchOptions
from bench.records import STAMP
from bench.report import cellNames, runTables, spread, tables
from bench.runner import (
    BASELINE,
    PATTERN_SERVERS,
    Plan,
    Result,
    _perRun,
    namedOptions,
    serversFor,
    streamsNeeded,
)
from bench.scenarios import Figures, Settings
from bench.servers import importedFrom, thisTree
from streamd.framing import INT32
from streamd.seqframing import (
    Bye,
    Ping,
    Pong,
    Refused,
    ServerHello,
    SGap,
    SMsg,
    SPub,
    Start,
    StreamFraming,
    StreamStart,
    Sub,
    decodeClientFrame,
    framed,
)

EPOCH = bytes(range(8))


def _stamped(stamp: int) -> bytes:
    return STAMP.pack(stamp) + bytes(56)


def _session() -> bytes:
    """
    What a version 4 client of two streams may be sent: HELLO, a STREAM
    each, an SBATCH (an int32 entry reframed, as the hub makes it), SMSG
    frames (an entry encoded), an SGAP, a PING and a PONG.
    """
    one, two = StreamFraming(0), StreamFraming(7)
    batch = one.reframe(INT32.encodeMany([_stamped(1), _stamped(2), _stamped(3)]), INT32, 5)
    assert batch is not None
    return b"".join(
        [
            framed(ServerHello(4, EPOCH, 1, 0, 15000, 1 << 20)),
            framed(StreamStart(0, "s.0", EPOCH, 1, 4, 5)),
            framed(StreamStart(7, "s.7", EPOCH, 1, 0, 1)),
            batch,
            two.encodeEntry([_stamped(4), _stamped(5)], 1),
            framed(SGap(0, 8, 9, 1)),
            framed(SMsg(0, 10, _stamped(6))),
            framed(Ping()),
            framed(Pong()),
        ]
    )


class StreamReaderTests(SynchronousTestCase):
    """
    Tests for L{StreamReader}, the version 4 client's reading.
    """

    def test_whole(self) -> None:
        """
        Every message of every stream is counted and its stamp kept; STREAM,
        PING and PONG frames are counted; an SGAP moves its stream on.
        """
        reader = StreamReader(stamped=True)
        self.assertEqual(reader.feed(_session()), 6)
        self.assertEqual((reader.started, reader.pings, reader.pongs), (2, 1, 1))
        self.assertEqual(reader.stamps, [1, 2, 3, 4, 5, 6])
        self.assertEqual(reader.next, {0: 11, 7: 3})
        self.assertEqual(reader.names, {0: "s.0", 7: "s.7"})
        self.assertIsNotNone(reader.hello)

    def test_everySplit(self) -> None:
        """
        However the bytes are split in two reads, the same messages are
        counted, each when its frame is whole.
        """
        data = _session()
        for cut in range(len(data) + 1):
            reader = StreamReader()
            counted = reader.feed(data[:cut]) + reader.feed(bytearray(data[cut:]))
            self.assertEqual((counted, reader.messages, reader.pongs), (6, 6, 1), cut)

    def test_outOfSequence(self) -> None:
        """
        A message that does not follow on from its stream's last one, or
        of a stream never announced, is an error.
        """
        reader = StreamReader()
        reader.feed(framed(StreamStart(3, "a", EPOCH, 1, 0, 1)))
        with self.assertRaises(ValueError) as caught:
            reader.feed(framed(SMsg(3, 2, b"x")))
        self.assertIn("stream a: message 2 came when 1 was next", str(caught.exception))
        with self.assertRaises(ValueError):
            StreamReader().feed(framed(SMsg(4, 1, b"x")))

    def test_refusedAndBye(self) -> None:
        """
        A REFUSED frame, or a BYE, ends the client with what the daemon
        said.
        """
        with self.assertRaises(ConnectionError) as caught:
            StreamReader().feed(framed(Refused("s.1", "too many streams")))
        self.assertIn("'s.1': too many streams", str(caught.exception))
        with self.assertRaises(ConnectionError):
            StreamReader().feed(framed(Bye(11, "shutting down")))

    def test_oldVersion(self) -> None:
        """
        A daemon that answers with a version older than 4 is an error: the
        scenario would not measure named streams.
        """
        with self.assertRaises(ValueError):
            StreamReader().feed(framed(ServerHello(3, EPOCH, 1, 0, 0)))

    def test_answer(self) -> None:
        """
        The daemon's PINGs are answered with as many PONGs.
        """
        mine, theirs = socket.socketpair()
        with mine, theirs:
            reader = StreamReader()
            reader.feed(framed(Ping()) * 2)
            reader.answer(mine)
            reader.answer(mine)
            self.assertEqual(theirs.recv(100), framed(Pong()) * 2)


class FramesTests(SynchronousTestCase):
    """
    Tests for the frames the clients of named streams send.
    """

    def test_publications(self) -> None:
        """
        A publication is the SPUB of its stream with a stamped payload, as
        the daemon decodes it.
        """
        publications = Publications(["s.0", "prices.eu"])
        data = publications.frame(1, 42)
        self.assertEqual(data, framed(SPub("prices.eu", _stamped(42))))
        self.assertEqual(decodeClientFrame(data[4:]), SPub("prices.eu", _stamped(42)))

    def test_subscriptions(self) -> None:
        """
        The SUB frames of subjects, from the next message, in order.
        """
        data = subscriptions(["s.*", "a"])
        first = framed(Sub(Start.NEWEST, "s.*"))
        self.assertEqual(data, first + framed(Sub(Start.NEWEST, "a")))
        self.assertEqual(decodeClientFrame(first[4:]), Sub(Start.NEWEST, "s.*"))


class NamedOptionsTests(SynchronousTestCase):
    """
    Tests for the options and plans of the scenarios of named streams.
    """

    def plan(self, *argv: str) -> Plan:
        options = BenchOptions()
        options.parseOptions(list(argv))
        return options.plan(("streamd",))

    def test_onlyByName(self) -> None:
        """
        The default run has none of them; each is run when named, with its
        cells.
        """
        self.assertFalse(set(runner.NAMED) & set(self.plan().cells))
        plan = self.plan("-s", "streams,streamcost,patterns,subchurn", "--stream-connections", "10000,100")
        self.assertEqual(
            plan.cells,
            {
                "streams": ((10_000, 10_000, 1), (10_000, 100, 1)),
                "streamcost": ((10_000,),),
                "patterns": ((1000, 1000, 100),),
                "subchurn": ((10_000, 0), (0, 0), (10_000, 1000), (0, 1000)),
            },
        )

    def test_churnRates(self) -> None:
        """
        A churn rate of 0 means flat out; a negative one is refused.
        """
        plan = self.plan("-s", "subchurn", "--churn-rate", "0", "--churn-held", "5")
        self.assertEqual(plan.cells["subchurn"], ((0, 5),))
        with self.assertRaises(usage.UsageError):
            self.plan("--churn-rate", "-1")

    def test_baseline(self) -> None:
        """
        --baseline names a checkout with a streamd package; its daemon runs
        as the peer "baseline", before the others.
        """
        plan = self.plan("--baseline", str(thisTree()))
        self.assertEqual((plan.servers, plan.baseline), (("streamd", BASELINE), thisTree()))
        with tempfile.TemporaryDirectory() as empty, self.assertRaises(usage.UsageError):
            self.plan("--baseline", empty)

    def test_daemonOptions(self) -> None:
        """
        --streamd-option and --baseline-option (repeatable) add twistd plugin
        options to this tree's daemon and the baseline's, in burst and
        paced; C{{run}} in one becomes a new directory in the workdir for
        each run.
        """
        plan = self.plan(
            "--baseline",
            str(thisTree()),
            "--streamd-option=--data-dir={run}",
            "--streamd-option=--fsync=always",
            "--baseline-option=--history=1000000",
        )
        self.assertEqual(plan.options, ("--data-dir={run}", "--fsync=always"))
        self.assertEqual(plan.baselineOptions, ("--history=1000000",))
        with tempfile.TemporaryDirectory() as workdir:
            first, second = (_perRun(plan.options, Path(workdir)) for _ in range(2))
            self.assertEqual((first[1], second[1]), ("--fsync=always", "--fsync=always"))
            made = [Path(options[0].removeprefix("--data-dir=")) for options in (first, second)]
            self.assertNotEqual(made[0], made[1])
            self.assertEqual([path.parent for path in made], [Path(workdir)] * 2)
            self.assertTrue(all(path.is_dir() for path in made))
        self.assertEqual(_perRun(plan.baselineOptions, Path("/nonexistent")), ["--history=1000000"])

    def test_servers(self) -> None:
        """
        The scenarios of named streams run on this tree's streamd alone
        (patterns twice: exact, then pattern subscriptions), never on the
        baseline, which has no named streams.
        """
        plan = Plan({}, ("streamd", BASELINE), 1, Settings())
        self.assertEqual(serversFor(plan, "patterns"), PATTERN_SERVERS)
        self.assertEqual(serversFor(plan, "streams"), ("streamd",))
        self.assertEqual(serversFor(plan, "burst"), ("streamd", BASELINE))

    def test_maxStreams(self) -> None:
        """
        The daemon holds the streams a cell makes, and a margin.
        """
        plan = Plan({}, ("streamd",), 1, Settings())
        self.assertEqual(streamsNeeded("streams", (10_000, 100, 1)), 10_000)
        self.assertEqual(streamsNeeded("patterns", (1000, 300, 100)), 300)
        self.assertEqual(streamsNeeded("subchurn", (0, 1000)), 2000)
        options = namedOptions(plan, "streams", (10_000, 10_000, 1))
        self.assertEqual(options[-2:], ["--max-streams", "10100"])
        self.assertEqual(options[options.index("--max-clients") + 1], "20000")


class NamedReportTests(SynchronousTestCase):
    """
    Tests for the tables of the scenarios of named streams, and of every
    run.
    """

    def test_spread(self) -> None:
        """
        The spread of runs is the largest over the smallest, less one.
        """
        self.assertAlmostEqual(spread([100.0, 105.0, 102.0]), 0.05)
        self.assertEqual(spread([3.0]), 0.0)
        self.assertEqual(spread([0.0, 1.0]), 0.0)

    def test_cellNames(self) -> None:
        """
        The cells say what they hold.
        """
        self.assertEqual(cellNames("streams", (10_000, 100, 1)), ["10,000", "100 conn", "1/s each"])
        self.assertEqual(cellNames("subchurn", (0, 1000)), ["flat out", "1,000 held"])
        self.assertEqual(cellNames("patterns", (1000, 1000, 100)), ["1,000 subs", "1,000", "100/s"])

    def test_patternOverExact(self) -> None:
        """
        The patterns table divides the pattern subscriptions' figures by
        the exact ones'.
        """
        exact = {
            "subscribe_s": 2.0,
            "rss_subscribed_mib": 100.0,
            "kib_per_cursor": 1.0,
            "published_per_s": 100.0,
            "deliveries_per_s": 1e5,
            "delivered_share": 1.0,
            "server_cpu": 0.5,
            "server_ns_per_delivery": 5000.0,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "subscriber_cpu": 0.5,
            "limit": "-",
        }
        pattern = dict(exact, server_ns_per_delivery=5500.0, subscribe_s=1.0)
        cell = (1000, 1000, 100)
        plan = Plan({"patterns": (cell,)}, ("streamd",), 1, Settings())
        results = [
            Result("patterns", cell, name, [f])
            for name, f in zip(PATTERN_SERVERS, [exact, pattern], strict=True)
        ]
        lines = tables(plan, results).splitlines()
        self.assertEqual(lines[3].split()[:3], ["pattern/exact", "0.50x", "1.00x"])
        self.assertIn("1.10x*", lines[3].split())

    def test_runTables(self) -> None:
        """
        Every run has a row, in order, then the median and the spread.
        """
        runs: list[Figures] = [
            {"ms": 10.0, "mb_per_s": 1e6, "ms_per_mib": 1.0},
            {"ms": 11.0, "mb_per_s": 1e6, "ms_per_mib": 1.0},
        ]
        plan = Plan({"large": ((1 << 20,),)}, ("streamd",), 2, Settings())
        rows = [
            line.split()
            for line in runTables(plan, [Result("large", (1 << 20,), "streamd", runs)]).splitlines()
        ]
        self.assertEqual(
            [row[-4:-2] for row in rows[1:]],
            [["1", "10.0"], ["2", "11.0"], ["median", "10.5"], ["spread", "10.0%"]],
        )


class BaselineTests(SynchronousTestCase):
    """
    Tests for knowing which tree a daemon ran.
    """

    def test_importedFrom(self) -> None:
        """
        The first line a daemon logs names the streamd package it imported:
        its tree is two folders up.
        """
        log = b"streamd imported from /tmp/base/streamd/__init__.py\n2026 [-] streamd listening on ...\n"
        self.assertEqual(importedFrom(log), Path("/tmp/base"))
        self.assertIsNone(importedFrom(b"no such line\n"))

    def test_thisTree(self) -> None:
        """
        The benchmark's own tree holds the streamd it imported.
        """
        self.assertTrue((thisTree() / "streamd" / "__init__.py").is_file())
