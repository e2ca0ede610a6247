"""
The benchmark's output: a header stating the machine and the settings, one
text table per scenario with the streamd/redis ratios, and the raw figures
as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from streamd.bench.figures import BUSY, STOLEN
from streamd.bench.runner import WINDOWS_PENDING, Plan, Result, pendingLimits
from streamd.bench.scenarios import Figures, MiB
from streamd.bench.servers import BACKLOG, REDIS_SETTINGS


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


def ratio(mine: float, theirs: float) -> str:
    """
    C{mine / theirs}, as C{1.23x}.
    """
    if not theirs:
        return "-"
    return f"{mine / theirs:.2f}x"


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


COLUMNS: dict[str, tuple[Column, ...]] = {
    "burst": (
        Column("deliveries_per_s", "deliv/s", quantity),
        Column("mb_per_s", "MB/s", quantity),
        Column("server_cpu", "srv CPU", percent),
        Column("server_ns_per_delivery", "srv ns/deliv", fixed(0)),
        Column("server_rss_mib", "srv RSS MiB", fixed(1)),
        Column("publisher_cpu", "pub CPU", percent),
        Column("subscriber_cpu", "subs CPU", percent),
        Column("busiest_subscriber_cpu", "busiest sub", percent),
    ),
    "paced": (
        Column("published_per_s", "sent/s", quantity),
        Column("deliveries_per_s", "deliv/s", quantity),
        Column("p50_us", "p50 us", fixed(0)),
        Column("p99_us", "p99 us", fixed(0)),
        Column("max_us", "max us", fixed(0)),
        Column("server_cpu", "srv CPU", percent),
        Column("server_us_per_message", "srv us/msg", fixed(2)),
        Column("server_rss_mib", "srv RSS MiB", fixed(1)),
        Column("subscriber_cpu", "subs CPU", percent),
    ),
    "idle": (
        Column("rss_before_mib", "RSS before MiB", fixed(1)),
        Column("rss_after_mib", "RSS after MiB", fixed(1)),
        Column("kib_per_connection", "KiB/conn", fixed(2)),
        Column("broadcast_p50_ms", "bcast p50 ms", fixed(1)),
        Column("broadcast_ms", "bcast all ms", fixed(1)),
    ),
    "drip": (
        Column("dripped_kib", "sent KiB", fixed(0)),
        Column("rss_before_mib", "RSS before MiB", fixed(1)),
        Column("rss_held_mib", "RSS held MiB", fixed(1)),
        Column("rss_left_mib", "RSS left MiB", fixed(1)),
        Column("rss_per_byte", "RSS/byte sent", fixed(1)),
    ),
    "large": (
        Column("ms", "ms", fixed(1)),
        Column("mb_per_s", "MB/s", quantity),
        Column("ms_per_mib", "ms/MiB", fixed(2)),
    ),
}

_CELLS = {
    "burst": ("k", "size"),
    "paced": ("k", "size"),
    "idle": ("clients",),
    "drip": ("clients",),
    "large": ("size",),
}
_LIMITED = ("burst", "paced")


def cellNames(scenario: str, cell: tuple[int, ...]) -> list[str]:
    """
    The table cells naming C{cell}.
    """
    if scenario in ("burst", "paced"):
        return [f"K={cell[0]}", sizeName(cell[1])]
    if scenario in ("idle", "drip"):
        return [f"{cell[0]:,}"]
    return [sizeName(cell[0])]


def describe(plan: Plan, machine: str, redisVersion: str | None) -> str:
    """
    The header: the machine, the servers and how each scenario runs.
    """
    s = plan.settings
    servers = (
        "streamd" if redisVersion is None else f"streamd and redis-server {redisVersion} ({_redisFlags()})"
    )
    lines = [
        f"streamd.bench on {machine}",
        f"servers: {servers}; everything on 127.0.0.1, listen backlog {BACKLOG}; a fresh server per run"
        f"{', taking turns at going first' if redisVersion and plan.runs > 1 else ''}; median of {plan.runs} run(s)",
    ]
    if "burst" in plan.cells:
        lines.append(
            f"burst: publisher flat out, but at most {sizeName(s.window)} ahead of the slowest subscriber "
            f"(so queues stay bounded); {s.duration:g} s measured after {s.warmup:g} s warm-up"
        )
    if "paced" in plan.cells:
        lines.append(
            f"paced: {s.rate:,} msg/s, each payload stamped with monotonic_ns when sent; "
            f"{s.duration:g} s measured after {s.warmup:g} s warm-up"
        )
    if "burst" in plan.cells or "paced" in plan.cells:
        soft, hard = pendingLimits(WINDOWS_PENDING * s.window)
        lines.append(
            f"  streamd --soft-pending {sizeName(soft)} --max-pending {sizeName(hard)} "
            "(above the window: no subscriber is cut)"
        )
        if redisVersion is not None:
            lines.append(
                "  redis-server client-output-buffer-limit pubsub 0 0 0 (no limit: the window bounds queues)"
            )
    if "idle" in plan.cells:
        lines.append(
            "idle: server RSS growth per connection, and one 64 B broadcast to all of them "
            "(streamd --max-clients and redis --maxclients raised above the count)"
        )
    if "drip" in plan.cells:
        lines.append(
            f"drip: each client sends a 1 MiB message a byte per TCP segment (TCP_NODELAY), for {s.duration:g} s "
            "or until one byte is left; server RSS before, while they hold it, and after they leave"
        )
    if "large" in plan.cells:
        lines.append(
            "large: one message of each size, publisher to subscriber "
            "(streamd --max-message-size raised to the largest)"
        )
    lines.append(
        "MB = 10^6 payload bytes; CPU as a share of one core; "
        f"limit: what used >= {BUSY:.0%} of a core (or 'all cores' busy); ratio = streamd/redis"
    )
    return "\n".join(lines)


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
            if medians.get("streamd") and medians.get("redis"):
                s, r = medians["streamd"], medians["redis"]
                rows.append(
                    [*names, "ratio", *(ratio(s[c.key], r[c.key]) for c in columns)]  # type: ignore[arg-type, index]
                )
        out.append(table(rows, left=len(_CELLS[scenario]) + 1))
    note = _stealNote(results)
    if note:
        notes.append(note)
    return "\n\n".join(out + (["\n".join(notes)] if notes else []))


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


def writeJson(
    path: Path, plan: Plan, machine: str, redisVersion: str | None, results: Sequence[Result]
) -> None:
    """
    The raw figures of every run, their medians and the settings, as JSON.
    """
    document = {
        "machine": machine,
        "redis": redisVersion,
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
