"""
The benchmark's output: a header stating the machine and the settings, one
text table per scenario with each server's figures and streamd's ratio to
the better peer, and the raw figures as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import reconnect
from bench.figures import BUSY, STOLEN
from bench.metrics import SCRAPES
from bench.named import CHURN_BURST, CHURN_IN_FLIGHT, CHURN_NAMES, SIZE, TIMED_CONNECTIONS
from bench.runner import WINDOWS_PENDING, Plan, Result, pendingLimits
from bench.scenarios import TIMED_CONNECTIONS as PACED_TIMED
from bench.scenarios import Figures, MiB
from bench.servers import BACKLOG, NATS_DEFAULT_PAYLOAD, REDIS_SETTINGS, natsSettings, thisTree
from bench.wire import COMPRESS_FROM, STREAMD, WIRES, DeflateWebSocketWire, SecureWebSocketWire, TlsWire


def sizeName(size: int) -> str:
    """
    C{64 B}, C{1 KiB}, C{16 MiB}: a size in the largest unit that divides it.
    """
    for unit, name in ((MiB, "MiB"), (1024, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def quantity(value: float) -> str:
    """
    Three significant digits, with k, M or G for thousands, millions and
    billions.
    """
    value = float(f"{value:.3g}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def percent(value: float) -> str:
    """
    A share of one core as a percentage.
    """
    return f"{value * 100:.0f}%"


def fixed(digits: int) -> Callable[[float], str]:
    """
    A formatter with C{digits} decimals and thousands separators.
    """
    return lambda value: f"{value:,.{digits}f}"


def ratio(mine: float, theirs: float, better: int = 0) -> str:
    """
    C{mine / theirs}, as C{1.23x}; with C{better} (1: higher is better, -1:
    lower is), marked C{*} when C{mine} is the worse.
    """
    if not theirs:
        return "-"
    behind = (mine - theirs) * better < 0
    return f"{mine / theirs:.2f}x{'*' if behind else ''}"


def bestPeer(values: Sequence[float], better: int) -> float | None:
    """
    The figure to compare streamd's with among the peers' C{values}: the
    only one, or the better one when the figure has a better direction
    (C{better}: 1 higher, -1 lower); C{None} when there is none to pick.
    """
    if len(values) == 1:
        return values[0]
    if not values or not better:
        return None
    return max(values) if better > 0 else min(values)


def table(rows: Sequence[Sequence[str]], left: int) -> str:
    """
    Rows of cells as aligned text: the first C{left} columns aligned left,
    the others right.
    """
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) if i < left else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


@dataclass(frozen=True)
class Column:
    """
    One figure of a scenario's table.
    """

    key: str
    title: str
    format: Callable[[float], str]
    better: int = 0
    """
    1 if a higher figure is better, -1 if a lower one is, 0 if neither
    (what the load generators used, or what the publisher was asked for).
    """


HIGHER, LOWER = 1, -1

COLUMNS: dict[str, tuple[Column, ...]] = {
    "burst": (
        Column("deliveries_per_s", "deliv/s", quantity, HIGHER),
        Column("mb_per_s", "MB/s", quantity, HIGHER),
        Column("server_cpu", "srv CPU", percent),
        Column("server_ns_per_delivery", "srv ns/deliv", fixed(0), LOWER),
        Column("server_rss_mib", "srv RSS MiB", fixed(1), LOWER),
        Column("publisher_cpu", "pub CPU", percent),
        Column("subscriber_cpu", "subs CPU", percent),
        Column("busiest_subscriber_cpu", "busiest sub", percent),
        Column("wire_bytes_per_delivery", "wire B/deliv", fixed(0), LOWER),
    ),
    "paced": (
        Column("published_per_s", "sent/s", quantity),
        Column("deliveries_per_s", "deliv/s", quantity),
        Column("p50_us", "p50 us", fixed(0), LOWER),
        Column("p99_us", "p99 us", fixed(0), LOWER),
        Column("p999_us", "p99.9 us", fixed(0), LOWER),
        Column("max_us", "max us", fixed(0), LOWER),
        Column("server_cpu", "srv CPU", percent, LOWER),
        Column("server_us_per_message", "srv us/msg", fixed(2), LOWER),
        Column("server_rss_mib", "srv RSS MiB", fixed(1), LOWER),
        Column("subscriber_cpu", "subs CPU", percent),
    ),
    "idle": (
        Column("accept_s", "accept s", fixed(2), LOWER),
        Column("accepts_per_s", "conn/s", quantity, HIGHER),
        Column("subscribed_s", "subscribed s", fixed(2), LOWER),
        Column("rss_before_mib", "RSS before MiB", fixed(1), LOWER),
        Column("rss_after_mib", "RSS after MiB", fixed(1), LOWER),
        Column("kib_per_connection", "KiB/conn", fixed(2), LOWER),
        Column("broadcast_p50_ms", "bcast p50 ms", fixed(1), LOWER),
        Column("broadcast_ms", "bcast all ms", fixed(1), LOWER),
    ),
    "drip": (
        Column("dripped_kib", "sent KiB", fixed(0)),
        Column("rss_before_mib", "RSS before MiB", fixed(1)),
        Column("rss_held_mib", "RSS held MiB", fixed(1)),
        Column("rss_left_mib", "RSS left MiB", fixed(1)),
        Column("rss_per_byte", "RSS/byte sent", fixed(1)),
    ),
    "resume": (
        Column("resume_p50_ms", "p50 ms", fixed(2), LOWER),
        Column("resume_p99_ms", "p99 ms", fixed(2), LOWER),
        Column("resume_max_ms", "max ms", fixed(2), LOWER),
    ),
    "scrape": (
        Column("scrape_ms_empty", "0 conn ms", fixed(2), LOWER),
        Column("scrape_ms", "idle conn ms", fixed(2), LOWER),
        Column("scrape_max_ms", "max ms", fixed(2), LOWER),
        Column("scrape_growth", "growth", lambda value: f"{value:.1f}x", LOWER),
    ),
    "large": (
        Column("ms", "ms", fixed(1), LOWER),
        Column("mb_per_s", "MB/s", quantity, HIGHER),
        Column("ms_per_mib", "ms/MiB", fixed(2), LOWER),
    ),
    "streams": (
        Column("subscribe_s", "subscribe s", fixed(2), LOWER),
        Column("rss_empty_mib", "RSS empty MiB", fixed(1), LOWER),
        Column("rss_subscribed_mib", "RSS subscribed MiB", fixed(1), LOWER),
        Column("kib_per_subscribed_stream", "KiB/stream", fixed(2), LOWER),
        Column("server_rss_mib", "RSS running MiB", fixed(1), LOWER),
        Column("published_per_s", "sent/s", quantity),
        Column("deliveries_per_s", "deliv/s", quantity),
        Column("delivered_share", "deliv/sent", fixed(3)),
        Column("server_cpu", "srv CPU", percent, LOWER),
        Column("server_us_per_delivery", "srv us/deliv", fixed(1), LOWER),
        Column("p50_ms", "p50 ms", fixed(2), LOWER),
        Column("p99_ms", "p99 ms", fixed(2), LOWER),
        Column("publisher_cpu", "pub CPU", percent),
        Column("subscriber_cpu", "subs CPU", percent),
    ),
    "streamcost": (
        Column("rss_none_mib", "RSS none MiB", fixed(1), LOWER),
        Column("rss_declared_mib", "RSS declared MiB", fixed(1), LOWER),
        Column("argv_bytes", "argv B/name", fixed(0)),
        Column("idle_stream_bytes", "B/idle stream", fixed(0), LOWER),
        Column("subscription_bytes", "B/empty sub", fixed(0), LOWER),
        Column("subscribed_stream_bytes", "B/stream made by SUB", fixed(0), LOWER),
    ),
    "patterns": (
        Column("subscribe_s", "subscribe s", fixed(2), LOWER),
        Column("rss_subscribed_mib", "RSS MiB", fixed(1), LOWER),
        Column("kib_per_cursor", "KiB/(sub x stream)", fixed(2), LOWER),
        Column("published_per_s", "sent/s", quantity),
        Column("deliveries_per_s", "deliv/s", quantity),
        Column("delivered_share", "deliv/(sent x subs)", fixed(3)),
        Column("server_cpu", "srv CPU", percent, LOWER),
        Column("server_ns_per_delivery", "srv ns/deliv", fixed(0), LOWER),
        Column("p50_ms", "p50 ms", fixed(2), LOWER),
        Column("p99_ms", "p99 ms", fixed(2), LOWER),
        Column("subscriber_cpu", "subs CPU", percent),
    ),
    "subchurn": (
        Column("offered_per_s", "asked pairs/s", quantity),
        Column("pairs_per_s", "pairs/s", quantity, HIGHER),
        Column("server_cpu", "srv CPU", percent, LOWER),
        Column("server_us_per_pair", "srv us/pair", fixed(1), LOWER),
        Column("client_cpu", "client CPU", percent),
        Column("server_rss_mib", "srv RSS MiB", fixed(1), LOWER),
    ),
}

_CELLS = {
    "burst": ("k", "size"),
    "paced": ("k", "size", "rate"),
    "idle": ("clients",),
    "drip": ("clients",),
    "large": ("size",),
    "resume": ("reconnects",),
    "scrape": ("clients",),
    "streams": ("streams", "connections", "rate"),
    "streamcost": ("streams",),
    "patterns": ("subscribers", "streams", "rate"),
    "subchurn": ("rate", "held"),
}
_LIMITED = ("burst", "paced", "streams", "patterns")
_BASES = {"patterns": "streamd exact"}
"""
The server whose figures the others' are divided by, where it is not
streamd's int32 one.
"""


def cellNames(scenario: str, cell: tuple[int, ...]) -> list[str]:
    """
    The table cells naming C{cell}.
    """
    if scenario == "burst":
        return [f"K={cell[0]}", sizeName(cell[1])]
    if scenario == "paced":
        return [f"K={cell[0]}", sizeName(cell[1]), f"{cell[2]:,}/s"]
    if scenario in ("idle", "drip", "resume", "scrape", "streamcost"):
        return [f"{cell[0]:,}"]
    if scenario == "streams":
        return [f"{cell[0]:,}", f"{cell[1]:,} conn", f"{cell[2]:,}/s each"]
    if scenario == "patterns":
        return [f"{cell[0]:,} subs", f"{cell[1]:,}", f"{cell[2]:,}/s"]
    if scenario == "subchurn":
        return ["flat out" if not cell[0] else f"{cell[0]:,}/s", f"{cell[1]:,} held"]
    return [sizeName(cell[0])]


def describe(plan: Plan, machine: str, peers: dict[str, str]) -> str:
    """
    The header: the machine, the servers (C{peers}: the version of each one
    streamd is compared with) and how each scenario runs.
    """
    s = plan.settings
    servers = ["streamd"]
    if "redis" in peers:
        servers.append(f"redis-server {peers['redis']} ({_redisFlags()})")
    if "nats" in peers:
        servers.append(f"nats-server {peers['nats']} ({_natsFlags()})")
    backlog = f"listen backlog {BACKLOG}" + (
        " (nats-server: the kernel's somaxconn)" if "nats" in peers else ""
    )
    lines = [
        f"bench on {machine}",
        f"servers: {', '.join(servers)}; everything on 127.0.0.1, {backlog}; a fresh server per run"
        f"{', taking turns at going first' if peers and plan.runs > 1 else ''}; median of {plan.runs} run(s)",
    ]
    if "burst" in plan.cells:
        lines.append(
            f"burst: publisher flat out, but at most {sizeName(s.window)} ahead of the slowest subscriber "
            f"(so queues stay bounded); {s.duration:g} s measured after {s.warmup:g} s warm-up"
        )
    if ("burst" in plan.cells or "paced" in plan.cells) and s.payload != "zeros":
        lines.append(f"  payloads: {s.payload} after the 8-byte stamp")
    if "paced" in plan.cells:
        rates = sorted({cell[2] for cell in plan.cells["paced"]})
        lines.append(
            f"paced: {', '.join(f'{r:,}' for r in rates)} msg/s, each payload stamped with monotonic_ns when "
            f"sent, timed on {PACED_TIMED} subscriber connections at most (the others only counted); "
            f"{s.duration:g} s measured after {s.warmup:g} s warm-up"
        )
    if "burst" in plan.cells or "paced" in plan.cells:
        soft, hard = pendingLimits(WINDOWS_PENDING * s.window)
        lines.append(
            f"  streamd --soft-pending {sizeName(soft)} --max-pending {sizeName(hard)} "
            "(above the window: no subscriber is cut)"
        )
        if "redis" in peers:
            lines.append(
                "  redis-server client-output-buffer-limit pubsub 0 0 0 (no limit: the window bounds queues)"
            )
        if "nats" in peers:
            nats = natsSettings(0, WINDOWS_PENDING * s.window)
            lines.append(
                f"  nats-server max_pending {sizeName(nats['max_pending'])} (above the window), "  # type: ignore[arg-type]
                "write_timeout retry: no subscriber is cut"
            )
    if "idle" in plan.cells:
        lines.append(
            "idle: every client connects at once (as after a restart) and subscribes as soon as it is "
            "connected; accept s: until the server has accepted them all, subscribed s: until every "
            "subscription is answered (streamd: accepted is subscribed); then server RSS growth per "
            "connection, and one 64 B broadcast to all of them (client limits raised above the count)"
        )
    if "drip" in plan.cells:
        lines.append(
            f"drip: each client sends a 1 MiB message a byte per TCP segment (TCP_NODELAY), for {s.duration:g} s "
            "or until one byte is left; server RSS before, while they hold it, and after they leave"
        )
    variants = [name for name in plan.servers if _isStreamd(name) and name != STREAMD.name]
    if variants and ("burst" in plan.cells or "paced" in plan.cells):
        lines.append(
            f"{', '.join(variants)}: streamd with subscribers on its "
            f"{'/'.join(name.split()[-1] for name in variants)} listener(s) (seq: HELLO, then version 2's "
            "BATCH and MSG frames; ws: /ws, the handshake, then frames parsed; sse: /events over chunked HTTP/1.1, events parsed; "
            "sse-c: the same, counted by a C program, burst only), "
            "the publisher on int32; X/int32 = its figure over int32's in the same run"
        )
    if TlsWire.name in variants or SecureWebSocketWire.name in variants:
        lines.append(
            "  tls, wss: int32 and /ws over TLS, on ssl: listeners with a self-signed certificate made for each "
            "run, read by Python's ssl (the certificate checked); wss/tls = wss's figure over tls's in the "
            "same run"
        )
    if DeflateWebSocketWire.name in variants:
        lines.append(
            f"  ws-deflate: /ws offering permessage-deflate, streamd with --http-compress {COMPRESS_FROM}; "
            "wire B/deliv: bytes the subscribers read per message, headers and compression included"
        )
    if "resume" in plan.cells:
        lines.append(
            f"resume: a seq subscriber that has message N disconnects for {reconnect.AWAY_SECONDS * 1e3:g} ms "
            f"while {reconnect.RATE:,} msg/s of {reconnect.SIZE} B go on, reconnects with RESUME(epoch, N): "
            "time from connect() to receiving message N+1"
        )
    if "scrape" in plan.cells:
        lines.append(
            f"scrape: one GET /metrics (--http), parsed; median of {SCRAPES} with no client, then with the "
            "idle scenario's storm of clients connected; growth = the second over the first"
        )
    if "large" in plan.cells:
        lines.append(
            "large: one message of each size, publisher to subscriber "
            "(streamd --max-message-size and nats-server max_payload raised to the largest)"
        )
    lines.extend(_describeNamed(plan))
    lines.append(
        "MB = 10^6 payload bytes; CPU as a share of one core; "
        f"limit: what used >= {BUSY:.0%} of a core (or 'all cores': the machine's CPUs busy, softirqs and others' work too)"
    )
    if peers:
        lines.append(
            "ratio = streamd / the better peer in the same run (the only one, for figures with no better "
            "direction); * where streamd is behind it"
        )
    return "\n".join(lines)


def _describeNamed(plan: Plan) -> list[str]:
    """
    The header's lines about the baseline and the scenarios of named
    streams.
    """
    s = plan.settings
    lines = []
    if plan.baseline is not None:
        lines.append(
            f"baseline: streamd imported from {plan.baseline} (checked in its log), run beside this tree's "
            f"({thisTree()}), each on its own PYTHONPATH, in turns; ratio = this tree / baseline"
        )
    for who, options in (("streamd", plan.options), ("baseline", plan.baselineOptions)):
        if options:
            lines.append(f"{who} also runs burst and paced with: {' '.join(options)} ({{run}}: a new directory each run)")
    clients = (
        "seq version 4 clients on plain sockets (HELLO start NONE, then SUB/UNSUB/SPUB/PING; every frame "
        "decoded, each stream's numbers checked to follow on from its STREAM frame)"
    )
    if any(scenario in plan.cells for scenario in ("streams", "patterns", "subchurn", "streamcost")):
        lines.append(f"named streams: {clients}; {s.duration:g} s measured after {s.warmup:g} s warm-up")
    if "streams" in plan.cells:
        lines.append(
            "streams: N streams s.0.. made by their subscribers' SUBs, one subscriber each, spread over the "
            "given connections; one publisher connection sends SPUB by name to each stream in turn, "
            f"{SIZE} B stamped payloads; latency timed on {TIMED_CONNECTIONS} connections"
        )
    if "streamcost" in plan.cells:
        lines.append(
            "streamcost: three daemons at once, each with one v4 client: no stream, --declare default N "
            "times, --declare s.0 .. s.N-1; B/idle stream = (RSS declared - RSS repeated) / N; then the "
            "client SUBs every declared stream (B/empty sub), and the first daemon's client SUBs N new "
            "names (B/stream made by SUB, over RSS none)"
        )
    if "patterns" in plan.cells:
        lines.append(
            "patterns: the streams s.0.. made first (one SPUB each); each subscriber connection SUBs "
            "s.* (streamd pattern) or every name (streamd exact), then SPUB by name over the streams in "
            "turn; pattern/exact = the ratio of the two in the same run"
        )
    if "subchurn" in plan.cells:
        lines.append(
            f"subchurn: one v4 connection holds N subscriptions (held.*), then sends SUB churn.i, UNSUB "
            f"churn.i over {CHURN_NAMES} names in turn, at most {CHURN_BURST} pairs a write, a PING after "
            f"each, waiting while {CHURN_IN_FLIGHT} PINGs are unanswered; pairs/s: those whose PONG came"
        )
    return lines


def _natsFlags() -> str:
    settings = natsSettings(NATS_DEFAULT_PAYLOAD, 0)
    return (
        f"no JetStream, write_deadline {settings['write_deadline']}, write_timeout {settings['write_timeout']}, "
        f"ping_interval {settings['ping_interval']}"
    )


def _redisFlags() -> str:
    return " ".join(repr(a) if not a or " " in a else a for a in REDIS_SETTINGS)


def tables(plan: Plan, results: Sequence[Result]) -> str:
    """
    One table per scenario, then notes on failed runs, on runs the
    subscribers limited and on runs the hypervisor took CPU time from.
    """
    out = []
    notes = []
    for scenario in plan.cells:
        mine = [r for r in results if r.scenario == scenario]
        if not mine:
            continue
        columns = COLUMNS[scenario]
        heads = [scenario, *_CELLS[scenario][1:], "server", *(c.title for c in columns)]
        if scenario in _LIMITED:
            heads.append("limit")
        rows = [heads]
        cells = list(dict.fromkeys(r.cell for r in mine))
        for cell in cells:
            byServer = {r.server: r for r in mine if r.cell == cell}
            medians = {name: r.median() for name, r in byServer.items()}
            names = cellNames(scenario, cell)
            label = " ".join(names)
            blank = ["" for _ in names]
            for name, result in byServer.items():
                figures = medians[name]
                if figures is None:
                    rows.append([*names, name, "failed"])
                    notes.append(f"! {scenario} {label} {name}: {result.errors[0]}")
                    names = blank
                    continue
                row = [*names, name, *(c.format(figures[c.key]) for c in columns)]  # type: ignore[arg-type]
                if scenario in _LIMITED:
                    row.append(str(figures["limit"]))
                    note = _limitNote(figures)
                    if note:
                        notes.append(f"! {scenario} {label} {name}: {note}")
                if len(result.errors):
                    notes.append(
                        f"! {scenario} {label} {name}: {len(result.errors)} run(s) failed: {result.errors[0]}"
                    )
                rows.append(row)
                names = blank
            base = _BASES.get(scenario, STREAMD.name)
            ours = medians.get(base)
            theirs = [figures for name, figures in medians.items() if not _isStreamd(name) and figures]
            if ours and theirs:
                rows.append([*names, "ratio", *(_ratio(c, ours, theirs) for c in columns)])
                names = blank
            for name, figures in medians.items():
                if ours and figures and name != base and _isStreamd(name):
                    below = "int32" if base == STREAMD.name else base.split()[-1]
                    label = f"{name.split()[-1]}/{below}"
                    rows.append([*names, label, *(_ratio(c, figures, [ours]) for c in columns)])
                    names = blank
                    also = _alsoOver(name)
                    under = medians.get(also) if also else None
                    if under and also:
                        label = f"{name.split()[-1]}/{also.split()[-1]}"
                        rows.append([*names, label, *(_ratio(c, figures, [under]) for c in columns)])
        out.append(table(rows, left=len(_CELLS[scenario]) + 1))
    note = _stealNote(results)
    if note:
        notes.append(note)
    return "\n\n".join(out + (["\n".join(notes)] if notes else []))


def spread(values: Sequence[float]) -> float:
    """
    How far apart runs are: the largest over the smallest, less one (0.05:
    the runs are within 5% of each other); 0 for a single value or one of
    no size.
    """
    low, high = min(values), max(values)
    return high / low - 1 if low > 0 else 0.0


def runTables(plan: Plan, results: Sequence[Result]) -> str:
    """
    Every run's figures, in the order they ran, for each cell and server,
    then each figure's median and L{spread} over the runs: what the medians
    of L{tables} hide, and how noisy they were.
    """
    out = []
    for scenario in plan.cells:
        mine = [r for r in results if r.scenario == scenario and r.runs]
        if not mine:
            continue
        columns = COLUMNS[scenario]
        rows = [[scenario, *_CELLS[scenario][1:], "server", "run", *(c.title for c in columns)]]
        for result in mine:
            names = cellNames(scenario, result.cell)
            blank = ["" for _ in names]
            for number, figures in enumerate(result.runs, 1):
                rows.append([*names, result.server, str(number), *(c.format(figures[c.key]) for c in columns)])  # type: ignore[arg-type]
                names = blank
            median = result.median()
            assert median is not None
            rows.append([*blank, result.server, "median", *(c.format(median[c.key]) for c in columns)])  # type: ignore[arg-type]
            spreads = [f"{spread([run[c.key] for run in result.runs]):.1%}" for c in columns]  # type: ignore[misc]
            rows.append([*blank, result.server, "spread", *spreads])
        out.append(table(rows, left=len(_CELLS[scenario]) + 2))
    return "\n\n".join(out)


def _isStreamd(name: str) -> bool:
    """
    Whether C{name} is streamd, with any of its subscriber protocols.
    """
    return name.split()[0] == STREAMD.name


def _alsoOver(name: str) -> str | None:
    """
    The server whose figures C{name}'s are also divided by: its wire's
    L{Wire.alsoOver<bench.wire.Wire.alsoOver>}.
    """
    wire = WIRES.get(name)
    return wire.alsoOver if wire else None


def _ratio(column: Column, mine: Figures, theirs: Sequence[Figures]) -> str:
    """
    The ratio cell of C{column}: streamd's figure over the better peer's.
    """
    best = bestPeer([figures[column.key] for figures in theirs], column.better)  # type: ignore[misc]
    if best is None:
        return ""
    return ratio(mine[column.key], best, column.better)  # type: ignore[arg-type]


def _stealNote(results: Sequence[Result]) -> str | None:
    """
    What to say when the hypervisor took CPU time from some runs.
    """
    runs = [run for result in results for run in result.runs]
    stolen = []
    for run in runs:
        share = run.get("stolen")
        if isinstance(share, float) and share >= STOLEN:
            stolen.append(share)
    if not stolen:
        return None
    low, high = percent(min(stolen)), percent(max(stolen))
    return (
        f"! the hypervisor took {low if low == high else f'{low}-{high}'} of the CPUs' time in "
        f"{len(stolen)} of {len(runs)} runs (steal time, /proc/stat): those runs measure the machine's "
        "neighbours as much as the servers, and their ratios are unreliable; rerun on a quiet machine"
    )


def _limitNote(figures: Figures) -> str | None:
    """
    What to say about a run that the load generators may have limited.
    """
    if figures["limit"] == "subscribers":
        return (
            f"the subscribers were the bottleneck (busiest subscriber process at "
            f"{percent(figures['busiest_subscriber_cpu'])} of a core): the server may do better than shown"  # type: ignore[arg-type]
        )
    if figures["limit"] == "all cores":
        return (
            f"every core was busy: the server had {percent(figures['server_cpu'])} of one, "  # type: ignore[arg-type]
            f"the subscribers {percent(figures['subscriber_cpu'])} and the publisher "  # type: ignore[arg-type]
            f"{percent(figures['publisher_cpu'])}: the server may do better than shown"  # type: ignore[arg-type]
        )
    return None


def writeJson(path: Path, plan: Plan, machine: str, peers: dict[str, str], results: Sequence[Result]) -> None:
    """
    The raw figures of every run, their medians and the settings, as JSON.
    """
    document = {
        "machine": machine,
        "redis": peers.get("redis"),
        "nats": peers.get("nats"),
        "runs": plan.runs,
        "settings": asdict(plan.settings),
        "results": [
            {
                "scenario": r.scenario,
                "cell": dict(zip(_CELLS[r.scenario], r.cell, strict=True)),
                "server": r.server,
                "median": r.median(),
                "runs": r.runs,
                "errors": r.errors,
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


_HEADLINES = {
    "burst": ("deliveries_per_s", "deliveries/s", quantity),
    "paced": ("p99_us", "p99 us", fixed(0)),
    "idle": ("kib_per_connection", "KiB per connection", fixed(2)),
    "drip": ("rss_per_byte", "bytes of RSS per byte sent", fixed(1)),
    "large": ("ms", "ms", fixed(1)),
    "resume": ("resume_p50_ms", "ms to the first resumed message (p50)", fixed(2)),
    "scrape": ("scrape_ms", "ms per /metrics scrape", fixed(2)),
    "streams": ("server_cpu", "of a core (server)", percent),
    "streamcost": ("idle_stream_bytes", "bytes per idle stream", fixed(0)),
    "patterns": ("server_ns_per_delivery", "server ns per delivery", fixed(0)),
    "subchurn": ("pairs_per_s", "SUB+UNSUB pairs/s", quantity),
}


def headline(result: Result, number: int, runs: int, error: str | None) -> str:
    """
    One progress line for the run just finished (or failed with C{error}).
    """
    label = f"{result.scenario} {' '.join(cellNames(result.scenario, result.cell))} {result.server} [{number}/{runs}]"
    if error is not None:
        return f"{label}: failed: {error}"
    key, title, show = _HEADLINES[result.scenario]
    return f"{label}: {show(result.runs[-1][key])} {title}"  # type: ignore[arg-type]
