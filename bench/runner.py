"""
The plan of a benchmark: which scenarios, cells and servers, how many runs;
and running it, one fresh server per run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import named, reconnect, scenarios
from bench.figures import medianRun
from bench.proc import cores, stolenSeconds
from bench.scenarios import Figures, MiB, Settings
from bench.servers import BenchError, Server, startNats, startRedis, startStreamd
from bench.wire import STREAMD, WIRES
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE

SCENARIOS = ("burst", "paced", "idle", "large", "resume", "scrape")
PROTOCOL_SCENARIOS = ("burst", "paced")
"""
The scenarios run with every subscriber protocol of the plan; the others
with streamd's int32 (and its peers), but C{resume}, with C{seq} only, and
C{scrape}, with int32 only, which run on streamd alone.
"""
SOAKS = ("drip",)
"""
Scenarios run only when asked for by name: they measure memory under
hostile clients, not speed.
"""
NAMED = ("streams", "streamcost", "patterns", "subchurn")
"""
The scenarios of named streams (L{bench.named}), run only when asked for by
name, on streamd alone (C{patterns} on two: exact subscriptions, then
patterns).
"""
BASELINE = "baseline"
"""
The name in reports of the streamd of another tree (C{--baseline}), run
beside this tree's: as a peer, so each table has the ratio of this tree's
figures to its.
"""
PATTERN_SERVERS = ("streamd exact", "streamd pattern")
DEFAULT_CLIENTS = 10_000
CLIENTS_MARGIN = 100
WINDOWS_PENDING = 4
"""
Burst and paced runs let streamd queue this many publisher windows per
client, so that its slow-consumer rules never cut a subscriber.
"""


@dataclass(frozen=True)
class Plan:
    """
    What to measure.

    @ivar cells: per scenario, the cells to run: C{(k, size)} for burst,
        C{(k, size, rate)} for paced, C{(clients,)} for idle, drip and
        scrape, C{(trials,)} for resume, and the message sizes for large
        (all sent in one run).
    @ivar servers: streamd (its int32 subscribers) first, then streamd with
        subscribers of its other protocols (C{"streamd seq"}, ...), then the
        peers it is compared with (L{BASELINE} among them).
    @ivar baseline: the tree of L{BASELINE}'s streamd, if any.
    @ivar options: more twistd plugin options of this tree's streamd (its
        int32 subscribers' and its other protocols'), in burst and paced;
        C{{run}} in one is a new directory for each run (a C{--data-dir}).
    @ivar baselineOptions: the same, of L{BASELINE}'s streamd.
    """

    cells: dict[str, tuple[tuple[int, ...], ...]]
    servers: tuple[str, ...]
    runs: int
    settings: Settings
    baseline: Path | None = None
    options: tuple[str, ...] = ()
    baselineOptions: tuple[str, ...] = ()


@dataclass
class Result:
    """
    The runs of one cell on one server.
    """

    scenario: str
    cell: tuple[int, ...]
    server: str
    runs: list[Figures] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self) -> Figures | None:
        """
        The median of the runs that succeeded, if any did.
        """
        return medianRun(self.runs) if self.runs else None


def pendingLimits(pending: int) -> tuple[int, int]:
    """
    The C{--soft-pending} and C{--max-pending} under which a streamd client
    may have C{pending} bytes queued for good.
    """
    soft = max(pending, 1 * MiB)
    return soft, max(2 * soft, 8 * MiB)


def streamdOptions(maxMessage: int, pending: int, clients: int) -> list[str]:
    """
    The twistd plugin options that let streamd take a workload without
    cutting the benchmark's own clients.
    """
    soft, hard = pendingLimits(pending)
    return [
        "--max-message-size",
        str(max(maxMessage, DEFAULT_MAX_MESSAGE_SIZE)),
        "--soft-pending",
        str(soft),
        "--max-pending",
        str(hard),
        "--max-clients",
        str(max(clients + CLIENTS_MARGIN, 2 * DEFAULT_CLIENTS)),
        "--shutdown-timeout",
        "1",
    ]


def serverNeeds(plan: Plan, scenario: str, cell: tuple[int, ...]) -> tuple[int, int, int]:
    """
    The largest message, the backlog per client and the connections that
    C{scenario} needs a server to allow for C{cell}.
    """
    if scenario in ("burst", "paced"):
        return cell[1], WINDOWS_PENDING * plan.settings.window, DEFAULT_CLIENTS
    if scenario in ("idle", "drip", "scrape"):
        return DEFAULT_MAX_MESSAGE_SIZE, 0, cell[0]
    if scenario == "resume":
        return DEFAULT_MAX_MESSAGE_SIZE, 0, DEFAULT_CLIENTS
    if scenario in ("streams", "patterns"):
        return DEFAULT_MAX_MESSAGE_SIZE, 0, cell[1 if scenario == "streams" else 0]
    if scenario in NAMED:
        return DEFAULT_MAX_MESSAGE_SIZE, 0, DEFAULT_CLIENTS
    return max(cell), 2 * max(cell), DEFAULT_CLIENTS


def streamsNeeded(scenario: str, cell: tuple[int, ...]) -> int:
    """
    The named streams C{scenario} makes for C{cell} (its daemon's
    C{--max-streams} is that and a margin).
    """
    if scenario in ("streams", "streamcost"):
        return cell[0]
    if scenario == "patterns":
        return cell[1]
    if scenario == "subchurn":
        return cell[1] + named.CHURN_NAMES
    return 0


def serversFor(plan: Plan, scenario: str) -> tuple[str, ...]:
    """
    The servers of the plan that run C{scenario}.
    """
    if scenario == "resume":
        return ("streamd seq",)
    if scenario == "patterns":
        return PATTERN_SERVERS
    if scenario in NAMED:
        return (STREAMD.name,)
    if scenario == "scrape":
        return (STREAMD.name,)
    if scenario == "paced":
        # A C reader counts and does not time.
        return tuple(name for name in plan.servers if name not in WIRES or not WIRES[name].countedInC)
    if scenario in PROTOCOL_SCENARIOS:
        return plan.servers
    return tuple(name for name in plan.servers if name == STREAMD.name or not name.startswith(STREAMD.name))


def namedOptions(plan: Plan, scenario: str, cell: tuple[int, ...]) -> list[str]:
    """
    The twistd plugin options of a daemon of a named-streams scenario.
    """
    options = streamdOptions(*serverNeeds(plan, scenario, cell))
    return options + ["--max-streams", str(streamsNeeded(scenario, cell) + named.STREAM_MARGIN)]


def _start(plan: Plan, name: str, scenario: str, workdir: Path, cell: tuple[int, ...]) -> Server:
    maxMessage, pending, clients = serverNeeds(plan, scenario, cell)
    if name == "redis":
        return startRedis(workdir, max(clients + CLIENTS_MARGIN, DEFAULT_CLIENTS))
    if name == "nats":
        return startNats(workdir, max(clients + CLIENTS_MARGIN, DEFAULT_CLIENTS), maxMessage, pending)
    options = streamdOptions(maxMessage, pending, clients)
    if scenario in NAMED:
        return startStreamd(workdir, namedOptions(plan, scenario, cell), listeners=["seq"])
    if name == BASELINE:
        options += _perRun(plan.baselineOptions, workdir) if scenario in ("burst", "paced") else []
        return startStreamd(workdir, options, listeners=["main"], tree=plan.baseline, name=BASELINE)
    options += _perRun(plan.options, workdir) if scenario in ("burst", "paced") else []
    options += WIRES[name].serverOptions
    listeners = [WIRES[name].listener, "http" if scenario == "scrape" else "main"]
    return startStreamd(workdir, options, listeners=listeners)


def _perRun(options: tuple[str, ...], workdir: Path) -> list[str]:
    """
    C{options}, with C{{run}} in each replaced by a directory of
    C{workdir} that no run has used.
    """
    if not any("{run}" in option for option in options):
        return list(options)
    directory = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    return [option.replace("{run}", str(directory)) for option in options]


def _measure(
    scenario: str, server: Server, name: str, cell: tuple[int, ...], settings: Settings
) -> dict[tuple[int, ...], Figures]:
    if scenario == "streams":
        return {cell: named.streams(server, cell[0], cell[1], cell[2], settings)}
    if scenario == "patterns":
        pattern = name == PATTERN_SERVERS[1]
        return {cell: named.patterns(server, cell[0], cell[1], cell[2], pattern, settings)}
    if scenario == "subchurn":
        return {cell: named.subchurn(server, cell[0], cell[1], settings)}
    wire = STREAMD if name == BASELINE else WIRES[name]
    if scenario == "burst":
        return {cell: scenarios.burst(server, wire, cell[0], cell[1], settings)}
    if scenario == "paced":
        return {cell: scenarios.paced(server, wire, cell[0], cell[1], cell[2], settings)}
    if scenario == "idle":
        return {cell: scenarios.idle(server, wire, cell[0], settings)}
    if scenario == "drip":
        return {cell: scenarios.drip(server, wire, cell[0], settings)}
    if scenario == "scrape":
        return {cell: scenarios.scrape(server, wire, cell[0], settings)}
    if scenario == "resume":
        return {cell: reconnect.resume(server, wire, cell[0], settings)}
    return {(size,): figures for size, figures in scenarios.large(server, wire, cell, settings).items()}


class _Steal:
    """
    The share of the machine's CPU time that the hypervisor took, from now
    on: a run that loses much of it measures the neighbours, not the server.
    """

    def __init__(self) -> None:
        self._start = (time.monotonic(), stolenSeconds())

    def share(self) -> float:
        elapsed = time.monotonic() - self._start[0]
        return (stolenSeconds() - self._start[1]) / (elapsed * cores()) if elapsed > 0 else 0.0


def run(plan: Plan, workdir: Path, progress: Callable[[Result, int, str | None], None]) -> list[Result]:
    """
    Every run of the plan, each server in turn for each run of each cell,
    the first one first in odd runs and last in even ones, so that neither
    always goes first (a scenario's first run on a quiet machine tends to be
    slower; with an odd number of runs the first server still goes first
    once more); a run that fails is recorded and the benchmark goes on.

    @param progress: called with a result, the number of the run just added
        to it, and the error if that run failed.
    """
    results: dict[tuple[str, tuple[int, ...], str], Result] = {}
    for scenario, cells in plan.cells.items():
        for cell in cells:
            rows = [cell] if scenario != "large" else [(size,) for size in cell]
            for number in range(1, plan.runs + 1):
                servers = serversFor(plan, scenario)
                for name in servers if number % 2 else servers[::-1]:
                    mine = [
                        results.setdefault((scenario, row, name), Result(scenario, row, name)) for row in rows
                    ]
                    try:
                        if scenario == "streamcost":
                            options = namedOptions(plan, scenario, cell)
                            stolen = _Steal()
                            measured = {cell: named.streamCost(workdir, cell[0], options, plan.settings)}
                        else:
                            server = _start(plan, name, scenario, workdir, cell)
                            try:
                                stolen = _Steal()
                                measured = _measure(scenario, server, name, cell, plan.settings)
                            finally:
                                server.stop()
                        for figures in measured.values():
                            figures["stolen"] = stolen.share()
                    except BenchError as e:
                        for result in mine:
                            result.errors.append(str(e))
                            progress(result, number, str(e))
                        continue
                    for result in mine:
                        result.runs.append(measured[result.cell])
                        progress(result, number, None)
    return list(results.values())
