"""
Arithmetic on measurements: percentiles, medians of runs, and which process
limited a run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

BUSY = 0.9
"""
The share of one core from which a single-threaded process counts as the
bottleneck.
"""


STOLEN = 0.05
"""
The share of the machine's CPU time taken by the hypervisor (steal time)
from which a run counts as disturbed.
"""


def percentile(ordered: Sequence[int], p: float) -> int:
    """
    The nearest-rank C{p}th percentile of C{ordered} (sorted, not empty).
    """
    if not ordered:
        raise ValueError("no samples")
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def medianRun(runs: Sequence[dict[str, object]]) -> dict[str, object]:
    """
    One figure per key: the median over C{runs} for numbers, the most common
    value for text (the bottleneck), and what the first run says otherwise.
    """
    merged: dict[str, object] = {}
    for key in runs[0]:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = statistics.median(values)  # type: ignore[type-var]
        elif all(isinstance(v, str) for v in values):
            merged[key] = statistics.mode(values)
        else:
            merged[key] = values[0]
    return merged


def bottleneck(server: float, publisher: float, busiestSubscriber: float, total: float, cores: int) -> str:
    """
    What ran out of CPU first in a run, from CPU shares of one core: the
    single-threaded server, the publisher, a subscriber process, or the whole
    machine (every core busy, none of them alone at its limit); C{"-"} when
    nothing did.
    """
    if server >= BUSY:
        return "server"
    if busiestSubscriber >= BUSY:
        return "subscribers"
    if publisher >= BUSY:
        return "publisher"
    if total >= BUSY * cores:
        return "all cores"
    return "-"
