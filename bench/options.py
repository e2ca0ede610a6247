"""
The command line of C{python -m bench}.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.python import usage

from bench.load import PAYLOADS
from bench.runner import BASELINE, NAMED, SCENARIOS, SOAKS, Plan
from bench.scenarios import MiB, Settings
from bench.wire import PROTOCOLS
from streamd import _coerce

PROGRAM = "bench"
BURST_K = (1, 10, 100)
BURST_SIZES = (64, 1024, 64 * 1024)
PACED_K = (1, 10, 100)
PACED_SIZES = (64,)
PACED_RATES = (1_000, 10_000, 50_000)
MIN_SIZE = 8
PEERS = ("redis", "nats")
LARGE_SIZES = (1 * MiB, 16 * MiB, 64 * MiB)
DEFAULTS = Settings()

_SIZE = re.compile(r"(\d+)\s*(b|k|kib|m|mib)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": MiB, "mib": MiB}

RECONNECTS = 200
STREAMS = 10_000
STREAM_CONNECTIONS = (10_000, 100)
STREAM_RATE = 1
PATTERN_SUBSCRIBERS = 1000
PATTERN_STREAMS = 1000
PATTERN_RATE = 100
CHURN_RATES = (10_000, 0)
CHURN_HELD = (0, 1000)
QUICK = {
    "duration": 0.5,
    "warmup": 0.2,
    "idle-clients": 1000,
    "large-sizes": (1 * MiB,),
    "reconnects": 20,
}
"""
What C{--quick} changes, among the settings left at their defaults.
"""


def parseSize(text: str) -> int:
    """
    A size in bytes: C{64}, C{64B}, C{1k}, C{1KiB}, C{16M}, C{16MiB}.

    @raise ValueError: for anything else, or less than 8 bytes (a payload
        carries an 8-byte timestamp).
    """
    found = _SIZE.fullmatch(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a size (examples: 64, 1KiB, 16MiB)")
    size = int(found.group(1)) * _UNITS[(found.group(2) or "").lower()]
    if size < MIN_SIZE:
        raise ValueError(f"a payload holds an {MIN_SIZE}-byte timestamp, so {text!r} is too small")
    return size


def _positive(kind: Callable[[str], Any], option: str) -> Callable[[str], Any]:
    return _coerce.number(kind, option, "a number", 0, inclusive=False)


def _listOf(item: Callable[[str], Any], what: str) -> Callable[[str], tuple[Any, ...]]:
    def coerce(text: str) -> tuple[Any, ...]:
        values = tuple(item(part) for part in text.split(",") if part.strip())
        if not values:
            raise ValueError(f"{what} needs at least one value")
        return tuple(dict.fromkeys(values))

    return coerce


def _peer(text: str) -> str:
    name = text.strip()
    if name not in PEERS:
        raise ValueError(f"--compare knows {', '.join(PEERS)}, not {name!r}")
    return name


def _protocol(text: str) -> str:
    name = text.strip()
    if name not in PROTOCOLS:
        raise ValueError(f"--protocols knows {', '.join(PROTOCOLS)}, not {name!r}")
    return name


def _scenario(text: str) -> str:
    name = text.strip()
    known = SCENARIOS + SOAKS + NAMED
    if name not in known:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(known)})")
    return name


def _tree(text: str) -> Path:
    """
    A checkout holding a C{streamd} package: the baseline's tree.
    """
    tree = Path(text).absolute()
    if not (tree / "streamd" / "__init__.py").is_file():
        raise ValueError(f"{text!r} holds no streamd package (streamd/__init__.py)")
    return tree


def _churnRates(text: str) -> tuple[int, ...]:
    """
    Rates, comma-separated, where 0 means as fast as it goes.
    """
    return _listOf(_coerce.number(int, "churn-rate", "a number", 0), "--churn-rate")(text)


_scenarios = _listOf(_scenario, "--scenario")
_counts = _listOf(_positive(int, "k"), "--k")
_sizes = _listOf(parseSize, "a size list")
_duration = _positive(float, "duration")
_warmup = _positive(float, "warmup")
_runs = _positive(int, "runs")
_rates = _listOf(_positive(int, "rate"), "--rate")
_peers = _listOf(_peer, "--compare")
_protocols = _listOf(_protocol, "--protocols")
_reconnects = _positive(int, "reconnects")
_processes = _positive(int, "subscriber-processes")
_clients = _positive(int, "idle-clients")
_dripClients = _positive(int, "drip-clients")
_streams = _positive(int, "streams")
_streamConnections = _listOf(_positive(int, "stream-connections"), "--stream-connections")
_held = _listOf(_coerce.number(int, "churn-held", "a number", 0), "--churn-held")


class BenchOptions(usage.Options):
    """
    Options of C{python -m bench}.
    """

    synopsis = f"python -m {PROGRAM} [options]"
    longdesc = (
        "Starts a streamd server, a publisher and subscriber processes on 127.0.0.1, and reports "
        "deliveries/s, latency, server CPU and memory; --compare redis,nats runs the same workloads "
        "against redis-server pub/sub and nats-server, and compares streamd with the better of them."
    )
    optFlags = [
        ["quick", "q", "A short smoke run: 0.5 s runs, 1,000 idle clients, a 1 MiB large message."],
        ["every-run", None, "Also print every run's figures, and each figure's spread over the runs."],
        [
            "cluster",
            None,
            "Instead: streamd nodes joined through a local nats-server (K default 10,100; 64 B).",
        ],
    ]
    optParameters = [
        [
            "scenario",
            "s",
            SCENARIOS,
            f"Scenarios, comma-separated: {', '.join(SCENARIOS)}; or the soak {', '.join(SOAKS)}; "
            f"or those of named streams: {', '.join(NAMED)}.",
            _scenarios,
        ],
        ["k", None, None, "Subscriber counts, comma-separated (default: 1,10,100).", _counts],
        ["size", None, None, "Payload sizes, comma-separated (default: 64,1KiB,64KiB; paced: 64).", _sizes],
        ["duration", "d", DEFAULTS.duration, "Seconds measured per run.", _duration],
        ["warmup", None, DEFAULTS.warmup, "Seconds of traffic before measuring.", _warmup],
        ["runs", "n", 1, "Runs of every figure; the tables show medians.", _runs],
        ["rate", None, PACED_RATES, "Messages per second of the paced publisher, comma-separated.", _rates],
        ["window", None, DEFAULTS.window, "Bytes a burst publisher may lead a subscriber by.", parseSize],
        [
            "payload",
            None,
            DEFAULTS.payload,
            "What burst and paced payloads hold after their 8-byte stamp: zeros, or json (JSON-like price "
            "ticks, which compress as such text does: about 3.5 to 1 at 1 KiB).",
            _coerce.choice("payload", *PAYLOADS),
        ],
        ["subscriber-processes", None, None, "Subscriber processes (default: one per CPU).", _processes],
        ["idle-clients", None, 10_000, "Connections of the idle and scrape scenarios.", _clients],
        ["drip-clients", None, 4, "Connections of the drip soak, each sending a byte at a time.", _dripClients],
        ["large-sizes", None, LARGE_SIZES, "Message sizes of the large scenario.", _sizes],
        [
            "protocols",
            "p",
            ("int32",),
            f"Subscriber protocols of burst and paced, beside int32: {', '.join(PROTOCOLS)} "
            "(sse-c: SSE counted by a C program that gcc compiles, burst only; tls, wss: int32 and "
            "WebSocket over TLS).",
            _protocols,
        ],
        ["reconnects", None, RECONNECTS, "Reconnects timed by the resume scenario.", _reconnects],
        [
            "compare",
            None,
            (),
            "Also run every workload against these servers: redis, nats or redis,nats.",
            _peers,
        ],
        ["streams", None, STREAMS, "Named streams of the streams and streamcost scenarios.", _streams],
        [
            "stream-connections",
            None,
            STREAM_CONNECTIONS,
            "Connections the streams scenario's subscriptions are spread over, comma-separated.",
            _streamConnections,
        ],
        [
            "stream-rate",
            None,
            STREAM_RATE,
            "Messages a second to each stream (streams).",
            _positive(int, "stream-rate"),
        ],
        [
            "pattern-subscribers",
            None,
            PATTERN_SUBSCRIBERS,
            "Subscriber connections of the patterns scenario.",
            _positive(int, "pattern-subscribers"),
        ],
        [
            "pattern-streams",
            None,
            PATTERN_STREAMS,
            "Streams of the patterns scenario.",
            _positive(int, "pattern-streams"),
        ],
        [
            "pattern-rate",
            None,
            PATTERN_RATE,
            "Messages a second, all streams together, of the patterns scenario.",
            _positive(int, "pattern-rate"),
        ],
        [
            "churn-rate",
            None,
            CHURN_RATES,
            "SUB and UNSUB pairs a second (0: flat out), comma-separated.",
            _churnRates,
        ],
        [
            "churn-held",
            None,
            CHURN_HELD,
            "Subscriptions the churning connection holds meanwhile, comma-separated.",
            _held,
        ],
        ["baseline", None, None, "Also run streamd from this checkout (as the peer 'baseline').", _tree],
        ["json", None, None, "Write the raw figures of every run to this file."],
        ["cluster-reactor", None, None, "With --cluster: twistd --reactor of the nodes (e.g. asyncio)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["streamd-option"] = []
        self["baseline-option"] = []

    def opt_streamd_option(self, option: str) -> None:
        """
        One more twistd plugin option of this tree's streamd in burst and
        paced (repeatable; {run} in it is a new directory for each run,
        e.g. --streamd-option=--data-dir={run}).
        """
        self["streamd-option"].append(option)

    def opt_baseline_option(self, option: str) -> None:
        """
        The same, of the baseline's streamd (repeatable).
        """
        self["baseline-option"].append(option)

    def postOptions(self) -> None:
        if self["quick"]:
            for key, value in QUICK.items():
                if self[key] == self.defaults[key]:
                    self[key] = value
        if "sse-c" in self["protocols"] and shutil.which("gcc") is None:
            raise usage.UsageError(
                "-p sse-c compiles bench/ssecount.c with gcc, which is not on PATH (apt-get install gcc)"
            )

    def plan(self, servers: tuple[str, ...]) -> Plan:
        """
        The benchmark these options describe, on C{servers}.
        """
        cells: dict[str, tuple[tuple[int, ...], ...]] = {}
        for scenario in self["scenario"]:
            if scenario == "burst":
                ks, sizes = self["k"] or BURST_K, self["size"] or BURST_SIZES
                cells[scenario] = tuple((k, size) for k in ks for size in sizes)
            elif scenario == "paced":
                ks, sizes = self["k"] or PACED_K, self["size"] or PACED_SIZES
                cells[scenario] = tuple(
                    (k, size, rate) for k in ks for size in sizes for rate in self["rate"]
                )
            elif scenario == "idle":
                cells[scenario] = ((self["idle-clients"],),)
            elif scenario == "drip":
                cells[scenario] = ((self["drip-clients"],),)
            elif scenario == "scrape":
                cells[scenario] = ((self["idle-clients"],),)
            elif scenario == "resume":
                cells[scenario] = ((self["reconnects"],),)
            elif scenario == "streams":
                cells[scenario] = tuple(
                    (self["streams"], connections, self["stream-rate"])
                    for connections in self["stream-connections"]
                )
            elif scenario == "streamcost":
                cells[scenario] = ((self["streams"],),)
            elif scenario == "patterns":
                cells[scenario] = (
                    (self["pattern-subscribers"], self["pattern-streams"], self["pattern-rate"]),
                )
            elif scenario == "subchurn":
                cells[scenario] = tuple(
                    (rate, held) for held in self["churn-held"] for rate in self["churn-rate"]
                )
            else:
                cells[scenario] = (self["large-sizes"],)
        settings = Settings(
            duration=self["duration"],
            warmup=self["warmup"],
            window=self["window"],
            subscriberProcesses=self["subscriber-processes"] or 0,
            payload=self["payload"],
        )
        variants = tuple(PROTOCOLS[p] for p in self["protocols"] if p != "int32")
        baseline = (BASELINE,) if self["baseline"] is not None else ()
        return Plan(
            cells,
            servers[:1] + variants + baseline + servers[1:],
            self["runs"],
            settings,
            self["baseline"],
            tuple(self["streamd-option"]),
            tuple(self["baseline-option"]),
        )
